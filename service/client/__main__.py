"""`python -m service.client [--target HOST:PORT] models | stream MODEL --input x.npy --chunk N --output y.npy`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from service.client import Client, ServerError, security
from service.client.common import DEFAULT_TARGET


def list_models(client: Client) -> None:
    print(f"{'model':<24} {'version':>7}  {'ready':<5}  {'streamable':<10}  {'provider':<24} reason")
    for m in client.models():
        print(f"{m.name:<24} {m.version:>7}  {m.ready!s:<5}  {m.streamable!s:<10}  {m.provider:<24} {m.reason}")


def stream_file(client: Client, args: argparse.Namespace) -> None:
    """Stream `(time, features)` from a .npy file in chunks; save the first output's steps, concatenated."""
    x = np.load(args.input)
    if x.ndim != 2:
        raise SystemExit(f"{args.input}: expected (time, features), got shape {x.shape}")
    with client.stream(args.model, args.version) as stream:
        first = client.model(stream.info.model, stream.info.version).outputs[0].tensor.name
        pieces = [stream.send(x[start:start + args.chunk])[first] for start in range(0, len(x), args.chunk)]
    y = np.concatenate(pieces, axis=0)
    np.save(args.output, y)
    print(f"{args.model} v{stream.info.version}: {len(pieces)} chunks, {first} {y.shape} -> {args.output}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.client", description="seqserve command-line client")
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"server HOST:PORT (default {DEFAULT_TARGET})")
    security.add_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list every model version the server found")
    stream = commands.add_parser("stream", help="stream a (time, features) .npy file chunk by chunk")
    stream.add_argument("model")
    stream.add_argument("--version", type=int, default=0, help="model version (default: newest)")
    stream.add_argument("--input", required=True, help=".npy file holding (time, features)")
    stream.add_argument("--chunk", type=int, default=10, help="steps per chunk (default 10)")
    stream.add_argument("--output", required=True, help=".npy file for the first output, (time, size)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stream" and args.chunk < 1:
        raise SystemExit("--chunk must be >= 1")
    try:
        with Client(args.target, security=security.from_arguments(args)) as client:
            list_models(client) if args.command == "models" else stream_file(client, args)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
