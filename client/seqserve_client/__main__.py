"""`seqserve-client [--target HOST:PORT] models | stream MODEL --input x.npy --chunk N --output y.npy |
infer MODEL --input x.npy --output y.npy | vad FILE.wav [--chunk FRAMES] | load MODEL | unload MODEL [--force] |
index [--ready] | generate [--prompt TEXT]` (also `python -m seqserve_client`). A model with several data inputs
takes `--input NAME=FILE.npy` per input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqserve_client import Client, ServerError, control, generate, security, summary, vad
from seqserve_client.common import DEFAULT_TARGET

PROG = "seqserve-client"  # also `python -m seqserve_client` and, in the server, `python -m service.client`


def list_models(client: Client) -> None:
    print(f"{'model':<24} {'version':>7}  {'ready':<5}  {'streamable':<10}  {'provider':<24} reason")
    for m in client.models():
        print(f"{m.name:<24} {m.version:>7}  {m.ready!s:<5}  {m.streamable!s:<10}  {m.provider:<24} {m.reason}")


def load_inputs(specs: list[str]) -> np.ndarray | dict[str, np.ndarray]:
    """`--input FILE.npy` (one input), or `--input NAME=FILE.npy` for each input of a model with several; every
    array `(time, features)`, of equal lengths."""
    named = [spec.partition("=") for spec in specs]
    if len(specs) == 1 and not named[0][1]:
        arrays = {"": np.load(specs[0])}
    elif all(sep and name for name, sep, _ in named):
        arrays = {name: np.load(path) for name, _, path in named}
    else:
        raise SystemExit(f"--input {specs}: one FILE.npy, or NAME=FILE.npy for every input")
    for name, x in arrays.items():
        if x.ndim != 2 or len(x) != len(next(iter(arrays.values()))):
            raise SystemExit(f"--input {name or specs[0]}: expected (time, features) of the same length as the "
                             f"others, got shape {x.shape}")
    single = arrays.pop("", None)  # one unnamed input
    return arrays if single is None else single


def _steps(x: np.ndarray | dict[str, np.ndarray], a: int, b: int) -> np.ndarray | dict[str, np.ndarray]:
    return x[a:b] if isinstance(x, np.ndarray) else {k: v[a:b] for k, v in x.items()}


def stream_file(client: Client, args: argparse.Namespace) -> None:
    """Stream `(time, features)` from .npy files in chunks; save the first output's steps, concatenated."""
    x = load_inputs(args.input)
    steps = len(x) if isinstance(x, np.ndarray) else len(next(iter(x.values())))
    with client.stream(args.model, args.version) as stream:
        spec = client.model(stream.info.model, stream.info.version).outputs[0]
        first = spec.tensor.name
        pieces = [stream.send(_steps(x, start, start + args.chunk))[first] for start in range(0, steps, args.chunk)]
    y = np.concatenate(pieces, axis=0)
    np.save(args.output, y)
    print("\n".join(summary.chunk_lines(spec, pieces)))
    print(f"{args.model} v{stream.info.version}: {len(pieces)} chunks, {first} {y.shape} -> {args.output}")


def infer_file(client: Client, args: argparse.Namespace) -> None:
    """One whole sequence `(time, features)` from .npy files through Infer; save the first output, (time, size)."""
    x = load_inputs(args.input)
    batch = x[None] if isinstance(x, np.ndarray) else {k: v[None] for k, v in x.items()}
    outputs, _ = client.infer(args.model, batch, version=args.version)
    name, y = next(iter(outputs.items()))
    np.save(args.output, y[0])
    spec = next(o for o in client.model(args.model, args.version).outputs if o.tensor.name == name)
    print(f"{args.model}: {name} {y[0].shape} -> {args.output}; last step: {summary.last_step(spec, y[0, -1])}")


def vad_file(client: Client, args: argparse.Namespace) -> None:
    """Stream a WAV file through the VAD model; print one speech segment per line."""
    probs = vad.frame_probabilities(client, vad.read_wav(args.wav), args.chunk, args.model)
    segments = vad.speech_segments(probs)
    for start, end in segments:
        print(f"speech {start:7.2f}s - {end:7.2f}s")
    print(f"{len(segments)} speech segments in {len(probs)} frames ({len(probs) * 512 / vad.SAMPLE_RATE:.2f}s)")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="seqserve command-line client")
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"server HOST:PORT (default {DEFAULT_TARGET})")
    security.add_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list every model version the server found")
    stream = commands.add_parser("stream", help="stream a (time, features) .npy file chunk by chunk")
    stream.add_argument("model")
    stream.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    stream.add_argument("--input", required=True, action="append", metavar="[NAME=]FILE.npy",
                        help=".npy file holding (time, features); NAME=FILE.npy for each input of a model with several")
    stream.add_argument("--chunk", type=int, default=10, help="steps per chunk (default 10)")
    stream.add_argument("--output", required=True, help=".npy file for the first output, (time, size)")
    infer = commands.add_parser("infer", help="run a whole (time, features) .npy file with Infer")
    infer.add_argument("model")
    infer.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    infer.add_argument("--input", required=True, action="append", metavar="[NAME=]FILE.npy",
                       help=".npy file holding (time, features); NAME=FILE.npy for each input of a model with several")
    infer.add_argument("--output", required=True, help=".npy file for the first output, (time, size)")
    detect = commands.add_parser("vad", help="print the speech segments of a 16 kHz mono WAV file")
    detect.add_argument("wav", type=Path)
    detect.add_argument("--model", default=vad.MODEL, help=f"the VAD model (default {vad.MODEL})")
    detect.add_argument("--chunk", type=int, default=4, help="frames per chunk (default 4)")
    text = commands.add_parser("generate", help="text from a character-level language model, one character a step")
    text.add_argument("--model", default=generate.MODEL, help=f"the model (default {generate.MODEL})")
    text.add_argument("--prompt", default="Beautiful is ", help="the text to start from")
    text.add_argument("--length", type=int, default=200, help="characters to generate (default 200)")
    text.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0: the most likely")
    text.add_argument("--seed", type=int, default=0)
    control.add_commands(commands)
    return parser


def generate_text(client: Client, args: argparse.Namespace) -> None:
    try:
        print(generate.generate(client, args.prompt, args.length, args.model, args.temperature, args.seed))
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.command in ("stream", "vad") and args.chunk < 1:
        raise SystemExit("--chunk must be >= 1")
    try:
        with Client(args.target, security=security.from_arguments(args)) as client:
            {"models": lambda: list_models(client), "stream": lambda: stream_file(client, args),
             "infer": lambda: infer_file(client, args), "vad": lambda: vad_file(client, args),
             "generate": lambda: generate_text(client, args),
             **dict.fromkeys(control.COMMANDS, lambda: control.run(client, args))}[args.command]()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    """The `seqserve-client` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
