"""Container health probe: `python -m service.healthcheck [--target HOST:PORT] [--timeout S] [--service NAME]`.

Asks the server's `grpc.health.v1` service and exits 0 only when it answers SERVING; anything else (NOT_SERVING,
UNKNOWN, no answer within the timeout, connection refused) exits 1 with one line on stderr saying why. The
default target is this host's gRPC port (`SEQSERVE_PORT`, default 8001), so the Dockerfile's HEALTHCHECK and
docker-compose need no arguments.

It talks to the standard health service through `grpc_health` (not our generated code), so it stays tiny and
works against any gRPC server that implements the health protocol.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve_client.security import PLAIN, Security, add_arguments, from_arguments


def probe(target: str, timeout: float, service: str = "", security: Security = PLAIN) -> str:
    """The health status name the server reports for `service` ("" = the whole server)."""
    with security.channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def build_parser() -> argparse.ArgumentParser:
    default_target = f"127.0.0.1:{os.environ.get('SEQSERVE_PORT', '8001')}"
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--target", default=default_target, help=f"server address (default {default_target})")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    parser.add_argument("--service", default="", help='health service name (default "": the whole server)')
    add_arguments(parser)  # TLS / mTLS / token, for a hardened server
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = probe(args.target, args.timeout, args.service, from_arguments(args))
    except grpc.RpcError as exc:
        print(f"unhealthy: {args.target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if status != "SERVING":
        print(f"unhealthy: {args.target}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
