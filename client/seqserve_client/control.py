"""Model control from the command line: `load NAME`, `unload NAME [--force]`, `index [--ready]` (the server's
`LoadModel`, `UnloadModel` and `RepositoryIndex`; what they do: the server's docs/model-control.md)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TYPE_CHECKING

from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

if TYPE_CHECKING:
    from seqserve_client.sync import Client

COMMANDS = ("load", "unload", "index")


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    load = commands.add_parser("load", help="load (or reload) a model from the server's repository")
    load.add_argument("model")
    unload = commands.add_parser("unload", help="unload every version of a model")
    unload.add_argument("model")
    unload.add_argument("--force", action="store_true", help="end its live sessions instead of refusing")
    index = commands.add_parser("index", help="every model version in the repository, its state and reason")
    index.add_argument("--ready", action="store_true", help="only the versions being served")


def run(client: Client, args: argparse.Namespace) -> None:
    if args.command == "load":
        print_versions(client.load_model(args.model))
    elif args.command == "unload":
        ended, versions = client.unload_model(args.model, force=args.force)
        print_versions(versions)
        if ended:
            print(f"{ended} live sessions ended")
    else:
        print_versions(client.repository_index(ready_only=args.ready))


def state_name(state: int) -> str:
    return pb.VersionState.Name(state).removeprefix("VERSION_STATE_")  # type: ignore[arg-type]


def print_versions(versions: Iterable[pb.VersionStatus]) -> None:
    print(f"{'model':<24} {'version':>7}  {'state':<11}  {'sessions':>8}  reason")
    for v in versions:
        newest = " (newest)" if v.newest else ""
        print(f"{v.name:<24} {v.version:>7}  {state_name(v.state):<11}  {v.sessions:>8}  {v.reason}{newest}")
