"""A bounded live fuzzer for both services (`tests/service/grpc/test_fuzz.py`, `make fuzz`).

Seeds are valid requests of every RPC (ours, Triton, health); each mutant is a seed's bytes flipped, cut,
spliced or padded, or a structurally hostile message (extreme shapes, names, versions, ids). Unary mutants are
sent raw (no serializer: the server sees exactly these bytes), stream mutants after a valid first message.
`Tally` counts every answer by status code (in-stream errors by their code too).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from modelrepo import Manifest
from seqserve_client.codec import array_to_tensor
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from service.grpc.generated.inference import grpc_service_pb2 as tpb

NATIVE, TRITON = "/seqserve.v1.SeqServe/", "/inference.GRPCInferenceService/"
HEALTH = "/grpc.health.v1.Health/Check"
HOSTILE_DIMS = [0, 1, 5, 2**31, 2**32, 2**62, 2**63 - 1, -1, -(2**63)]
DEADLINE_S = 20.0  # a safety net: an answer this late is a hang, counted as DEADLINE_EXCEEDED
IN_FLIGHT = 16
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
ERROR_CODE = re.compile(r"(?:^|: )([A-Z_]+): ")  # a Triton in-stream error: "[request 'id': ]CODE: message"


@dataclass
class Tally:
    codes: Counter[str] = field(default_factory=Counter)
    messages: int = 0

    def bad(self) -> dict[str, int]:
        return {code: n for code, n in self.codes.items() if code in ("INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED")}


def triton_infer(manifest: Manifest, rng: random.Random, sequence_id: int = 0, start: bool = False
                 ) -> tpb.ModelInferRequest:
    x = np.random.default_rng(rng.randrange(2**32)).standard_normal((1, 3, manifest.input.features))
    request = tpb.ModelInferRequest(model_name=manifest.name, id="r")
    request.inputs.add(name=manifest.input.name, datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    if sequence_id:
        request.parameters["sequence_id"].int64_param = sequence_id
        request.parameters["sequence_start"].bool_param = start
    return request


def seeds(manifests: dict[str, Manifest], rng: random.Random) -> list[tuple[str, bytes]]:
    """(method, valid request bytes) for every unary RPC of both services and health."""
    model = next(m for m in manifests.values() if m.streamable)
    x = np.zeros((1, 3, model.input.features), np.float32)
    out: list[tuple[str, object]] = [
        (NATIVE + "Infer", npb.InferRequest(model=model.name, input=array_to_tensor(x))),
        (NATIVE + "ListModels", npb.ListModelsRequest()),
        (NATIVE + "GetModel", npb.GetModelRequest(name=model.name)),
        (TRITON + "ModelInfer", triton_infer(model, rng)),
        (TRITON + "ModelInfer", triton_infer(model, rng, sequence_id=rng.randrange(1, 2**40), start=True)),
        (TRITON + "ModelReady", tpb.ModelReadyRequest(name=model.name, version="1")),
        (TRITON + "ModelMetadata", tpb.ModelMetadataRequest(name=model.name)),
        (TRITON + "ModelConfig", tpb.ModelConfigRequest(name=model.name)),
        (TRITON + "ModelStatistics", tpb.ModelStatisticsRequest(name=model.name)),
        (TRITON + "RepositoryIndex", tpb.RepositoryIndexRequest(ready=True)),
        (TRITON + "ServerLive", tpb.ServerLiveRequest()),
        (TRITON + "ServerReady", tpb.ServerReadyRequest()),
        (TRITON + "ServerMetadata", tpb.ServerMetadataRequest()),
        (HEALTH, health_pb2.HealthCheckRequest(service="")),
    ]
    return [(method, message.SerializeToString()) for method, message in out]  # type: ignore[attr-defined]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random byte-level mutation (several for some)."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4))):
        op = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a byte
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # cut
            del buf[at:at + rng.randrange(1, 16)]
        elif op == 2:  # insert random bytes
            buf[at:at] = rng.randbytes(rng.randrange(1, 12))
        elif op == 3:  # a varint of all-ones (huge lengths, tags)
            buf[at:at] = b"\xff" * rng.randrange(1, 11)
        elif op == 4 and buf:  # duplicate a slice
            start = rng.randrange(len(buf))
            buf[at:at] = buf[start:start + rng.randrange(1, 32)]
        else:  # truncate
            del buf[at:]
    return bytes(buf)


def hostile(manifests: dict[str, Manifest], rng: random.Random) -> tuple[str, bytes]:
    """A message that decodes but holds extreme values (shapes, names, versions, ids)."""
    model = rng.choice(list(manifests.values()))
    shape = [rng.choice(HOSTILE_DIMS) for _ in range(rng.choice((0, 1, 3, 3, 9, 65)))]
    data = rng.randbytes(rng.choice((0, 4, 12, 52)))
    kind = rng.randrange(5)
    if kind == 0:
        return NATIVE + "Infer", npb.InferRequest(
            model=model.name, input=npb.Tensor(dtype=npb.DATA_TYPE_FLOAT32, shape=shape, data=data)
        ).SerializeToString()
    if kind == 1:
        request = triton_infer(model, rng, sequence_id=rng.randrange(1, 2**63), start=rng.random() < 0.2)
        del request.inputs[0].shape[:]
        request.inputs[0].shape.extend(shape)
        request.raw_input_contents[0] = data
        return TRITON + "ModelInfer", request.SerializeToString()
    if kind == 2:
        version = rng.choice(["\u00b2", "\u0663", "9" * 40, "-1", "0", " 1", "1"])
        return TRITON + "ModelReady", tpb.ModelReadyRequest(name=model.name, version=version).SerializeToString()
    if kind == 3:
        name = rng.choice(["x" * rng.randrange(1, 200_000), "\u00e9\u0000", model.name + "\u202e"])
        return TRITON + "ModelMetadata", tpb.ModelMetadataRequest(name=name).SerializeToString()
    return NATIVE + "GetModel", npb.GetModelRequest(name="n" * rng.randrange(1, 100_000)).SerializeToString()


def unary_mutants(manifests: dict[str, Manifest], rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    base = seeds(manifests, rng)
    for _ in range(count):
        if rng.random() < 0.15:
            yield hostile(manifests, rng)
        else:
            method, data = rng.choice(base)
            yield method, mutate(data, rng)


def send_unary(channel: grpc.Channel, mutants: Iterator[tuple[str, bytes]], tally: Tally) -> None:
    """Every mutant as a raw unary call, `IN_FLIGHT` at a time; each answer counted by code."""
    calls: dict[str, Callable[..., Future[bytes]]] = {}
    pending: list[Future[bytes]] = []

    def settle(future: Future[bytes]) -> None:
        try:
            future.result()
            tally.codes["OK"] += 1
        except grpc.RpcError as exc:
            tally.codes[exc.code().name] += 1  # type: ignore[attr-defined]

    for method, data in mutants:
        call = calls.get(method) or calls.setdefault(method, channel.unary_unary(method).future)
        pending.append(call(data, timeout=DEADLINE_S))
        tally.messages += 1
        if len(pending) >= IN_FLIGHT:
            settle(pending.pop(0))
    for future in pending:
        settle(future)


def native_stream(channel: grpc.Channel, manifest: Manifest, rng: random.Random, mutants: int, tally: Tally) -> None:
    """A valid open, then `mutants` mutated chunk/control messages: the stream's answers and end, counted."""
    x = np.random.default_rng(rng.randrange(2**32)).standard_normal((3, manifest.input.features)).astype("<f4")
    chunk = npb.StreamRequest(seq=1, chunk=npb.Chunk(input=array_to_tensor(x))).SerializeToString()
    others = [npb.StreamRequest(seq=2, reset=npb.Reset()).SerializeToString(),
              npb.StreamRequest(seq=3, open=npb.Open(model=manifest.name)).SerializeToString()]
    requests = [npb.StreamRequest(seq=0, open=npb.Open(model=manifest.name)).SerializeToString()]
    requests += [mutate(rng.choice([chunk, chunk, *others]), rng) for _ in range(mutants)]
    tally.messages += mutants
    _count_stream(channel.stream_stream(NATIVE + "Stream")(iter(requests), timeout=DEADLINE_S),
                  npb.StreamResponse, tally)


def triton_stream(channel: grpc.Channel, manifests: dict[str, Manifest], rng: random.Random, mutants: int,
                  tally: Tally) -> None:
    model = next(m for m in manifests.values() if m.streamable)
    base = triton_infer(model, rng, sequence_id=rng.randrange(1, 2**40), start=True).SerializeToString()
    requests = [mutate(base, rng) if rng.random() < 0.85 else hostile(manifests, rng)[1] for _ in range(mutants)]
    tally.messages += mutants
    _count_stream(channel.stream_stream(TRITON + "ModelStreamInfer")(iter(requests), timeout=DEADLINE_S),
                  tpb.ModelStreamInferResponse, tally)


def _count_stream(call: Iterator[bytes], response_type: type, tally: Tally) -> None:
    try:
        for raw in call:
            answer = response_type.FromString(raw)
            if response_type is npb.StreamResponse and answer.WhichOneof("kind") == "error":
                tally.codes[CODE_NAMES.get(answer.error.code, f"code {answer.error.code}")] += 1
            elif response_type is tpb.ModelStreamInferResponse and answer.error_message:
                found = ERROR_CODE.search(answer.error_message)
                tally.codes[found.group(1) if found else answer.error_message[:40]] += 1
            else:
                tally.codes["OK"] += 1
        tally.codes["OK"] += 1  # the stream's own end
    except grpc.RpcError as exc:
        tally.codes[exc.code().name] += 1  # type: ignore[attr-defined]
