"""`make models`: Silero VAD from the pip-installed `silero-vad` wheel into models/silero_vad/1/.

`python -m modelrepo.importer.silero [--models DIR] [--force]`; the file is found through the installed
distribution's metadata (importing `silero_vad` would import torch), never downloaded.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from modelrepo.errors import ImportRefused
from modelrepo.importer.build import ImportOptions, import_onnx
from modelrepo.manifest import Manifest

VERSION = "6.2.3"
FILE = "silero_vad/data/silero_vad.onnx"
SAMPLE_RATE, FRAME, CONTEXT = 16000, 512, 64
OPTIONS = ImportOptions(
    name="silero_vad",
    constants={"sr": str(SAMPLE_RATE)},
    frame=FRAME,
    context=CONTEXT,
    sample_rate=SAMPLE_RATE,
    kind="probability",
    output_description="probability that the frame holds speech, in [0, 1] (Silero's threshold: 0.5)",
    description=f"Silero VAD {VERSION}: speech probability of every {FRAME}-sample frame of 16 kHz mono audio "
                "(float32 in [-1, 1]); stream frames, the model carries its own 64-sample context",
    source_file=f"{FILE} from the PyPI wheel silero-vad=={VERSION}",
    licence="MIT (Copyright (c) 2020-present Silero Team)",
    url="https://github.com/snakers4/silero-vad",
)


def model_file() -> Path:
    """The ONNX file inside the installed wheel; `ImportRefused` when the right version is not installed."""
    try:
        dist = metadata.distribution("silero-vad")
    except metadata.PackageNotFoundError:
        raise ImportRefused(f"silero-vad is not installed; pip install silero-vad=={VERSION}") from None
    if dist.version != VERSION:
        raise ImportRefused(f"silero-vad {dist.version} is installed; the shipped model is {VERSION}")
    return Path(str(dist.locate_file(FILE)))


def import_silero(root: Path, force: bool = False) -> Manifest:
    return import_onnx(model_file(), root, OPTIONS, force=force)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelrepo.importer.silero", description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    try:
        manifest = import_silero(args.models, args.force)
    except ImportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.models}/{manifest.name}/{manifest.version}: {manifest.verification}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
