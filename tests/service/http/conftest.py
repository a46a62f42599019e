"""Web front fixtures: the gRPC tests' real server (`start_server`, every port 0) and its parity oracle."""

from tests.service.grpc.conftest import manifests, reference, start_server, streamable

__all__ = ["manifests", "reference", "start_server", "streamable"]
