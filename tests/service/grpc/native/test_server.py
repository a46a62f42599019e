"""Server assembly: health, reflection, and the error table's handling of the unexpected."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from service.engine.errors import InvalidInput, SeqServeError, Unavailable
from service.grpc.errors import INTERNAL_MESSAGE, to_status


def test_health_is_serving_and_reflection_lists_and_describes_the_native_api(start_server: Callable) -> None:
    server = start_server()
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "seqserve.v1.SeqServe"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = ProtoReflectionDescriptorDatabase(channel)
        services = set(reflection.get_services())
        assert {"seqserve.v1.SeqServe", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        described = reflection.FindFileContainingSymbol("seqserve.v1.SeqServe")
        methods = ["Stream", "Infer", "ListModels", "GetModel", "LoadModel", "UnloadModel", "RepositoryIndex"]
        assert [m.name for m in described.service[0].method] == methods


def test_domain_errors_keep_their_message_and_subclasses_inherit_the_code() -> None:
    class Draining(Unavailable):
        pass

    assert to_status(InvalidInput("bad chunk")) == (grpc.StatusCode.INVALID_ARGUMENT, "bad chunk")
    assert to_status(Draining("later")) == (grpc.StatusCode.UNAVAILABLE, "later")


@pytest.mark.parametrize("exc", [RuntimeError("secret path /etc/x"), SeqServeError("unmapped base")])
def test_unexpected_errors_are_internal_with_a_generic_message_and_logged(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="service.grpc.errors"):
        assert to_status(exc) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    assert caplog.records[-1].exc_info is not None and caplog.records[-1].exc_info[1] is exc
