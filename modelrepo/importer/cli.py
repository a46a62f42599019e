"""The `import` command line: flags -> `ImportOptions`; every refusal is one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modelrepo.errors import ImportRefused
from modelrepo.importer.build import ImportOptions, import_onnx


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("import", help="import a stateful ONNX file into the model repository",
                            description="Wrap a stateful ONNX graph into the served form, verify it against the "
                                        "original graph's own step-by-step run, write models/NAME/VERSION/.")
    p.add_argument("model", type=Path, help="the .onnx file")
    p.add_argument("--name", required=True, help="model name in the repository")
    p.add_argument("--version", type=int, default=1, help="version folder (default 1)")
    p.add_argument("--models", type=Path, default=Path("models"), help="repository root (default models/)")
    p.add_argument("--state", action="append", default=[], metavar="IN:OUT",
                   help="a state pair (repeatable); default: proposed from matching names and shapes")
    p.add_argument("--constant", action="append", default=[], metavar="NAME=VALUE",
                   help="bake a scalar input into the graph (repeatable), e.g. sr=16000")
    p.add_argument("--batch-axis", action="append", default=[], metavar="NAME=AXIS",
                   help="the batch axis of a tensor when the proposal is wrong (repeatable)")
    p.add_argument("--frame", type=int, default=None, metavar="SAMPLES",
                   help="a frame model without a time axis: new samples per frame")
    p.add_argument("--context", type=int, default=0, metavar="SAMPLES",
                   help="samples of the previous frame the graph expects in front of each frame")
    p.add_argument("--vocab-size", action="append", default=[], metavar="NAME=N",
                   help="an integer (token id) input and its vocabulary size: ids must be < N (repeatable)")
    p.add_argument("--sample-rate", type=int, default=None, help="recorded in the manifest for frame models")
    p.add_argument("--kind", default="other", choices=["logits", "regression", "probability", "other"],
                   help="what every output means (default other)")
    p.add_argument("--description", default="")
    p.add_argument("--source-file", default="", help="how the manifest names the original (default: file name)")
    p.add_argument("--licence", default="", help="the original's licence, recorded in the manifest")
    p.add_argument("--url", default="", help="where the original comes from")
    p.add_argument("--force", action="store_true", help="replace an existing version folder")


def options(args: argparse.Namespace) -> ImportOptions:
    if args.version < 1:
        raise ImportRefused("--version must be a positive integer")
    if (args.frame is not None and args.frame < 1) or args.context < 0:
        raise ImportRefused("--frame must be >= 1 and --context >= 0")
    return ImportOptions(
        name=args.name, version=args.version,
        constants=dict(_split(c, "=", "--constant NAME=VALUE") for c in args.constant),
        pairs=[_split(s, ":", "--state IN:OUT") for s in args.state],
        batch_axes={k: _int(v, k, "--batch-axis") for k, v in (_split(b, "=", "--batch-axis NAME=AXIS")
                                                               for b in args.batch_axis)},
        vocab={k: _int(v, k, "--vocab-size") for k, v in (_split(b, "=", "--vocab-size NAME=N")
                                                          for b in args.vocab_size)},
        frame=args.frame, context=args.context, sample_rate=args.sample_rate, kind=args.kind,
        description=args.description, source_file=args.source_file, licence=args.licence, url=args.url)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = import_onnx(args.model, args.models, options(args), force=args.force)
    except ImportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    v = manifest.verification
    assert v is not None
    state = ", ".join(f"{p.input}->{p.output} {p.shape}" for p in manifest.state)
    print(f"{args.models / manifest.name / str(manifest.version)}: input {manifest.input.name} "
          f"(batch, time, {manifest.input.features}), state {state}; original vs wrapped "
          f"{v.original_vs_wrapped:.1e}, chunked {v.chunked_vs_whole:.1e}, batched {v.batched_vs_alone:.1e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelrepo", description="model repository tools")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parser(commands)
    return run(parser.parse_args(argv))


def _split(text: str, sep: str, form: str) -> tuple[str, str]:
    left, found, right = text.partition(sep)
    if not found or not left or not right:
        raise ImportRefused(f"{text!r}: expected {form}")
    return left, right


def _int(text: str, name: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ImportRefused(f"{flag} {name}={text}: must be an integer") from None


if __name__ == "__main__":
    sys.exit(main())
