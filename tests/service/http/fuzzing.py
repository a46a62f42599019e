"""A bounded live fuzzer for the web front (`tests/service/http/test_fuzz.py`, `make fuzz`): the gRPC fuzzer's
byte mutations (`tests/service/grpc/fuzzing.py`) and hostile JSON values, on REST bodies, headers and paths, and on
WebSocket text and binary frames after a valid open. `Tally` counts answers by HTTP status and close code."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from modelrepo import Manifest
from seqserve_client.codec import array_to_tensor
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as npb
from tests.service.grpc.fuzzing import HOSTILE_DIMS, mutate

HOSTILE_VALUES: list[Any] = [None, True, -1, 0, 2**63, -(2**63), 1e308, "", "x" * 5000, [], {}, [[[]]], "FP32",
                             "\u0000", [2**31, 2**31], {"binary_data_size": 2**40}]
TIMEOUT = aiohttp.ClientTimeout(total=20.0)  # a safety net: an answer this late is a hang
BAD_STATUSES = (500, 1011, 4013, "hang")


@dataclass
class Tally:
    codes: Counter[int | str] = field(default_factory=Counter)
    messages: int = 0

    def bad(self) -> dict[int | str, int]:
        return {code: n for code, n in self.codes.items() if code in BAD_STATUSES}


def infer_body(manifest: Manifest, rng: random.Random, binary: bool) -> tuple[bytes, dict[str, str]]:
    """A valid KServe infer body (JSON or with binary tensor data) and its headers."""
    x = np.random.default_rng(rng.randrange(2**32)).standard_normal((1, 3, manifest.input.features))
    tensor: dict[str, Any] = {"name": manifest.input.name, "datatype": "FP32", "shape": list(x.shape)}
    body: dict[str, Any] = {"id": "r", "inputs": [tensor], "outputs": [{"name": manifest.outputs[0].name}]}
    if rng.random() < 0.3:
        body["parameters"] = {"sequence_id": rng.randrange(1, 2**40), "sequence_start": True}
    if not binary:
        tensor["data"] = x.reshape(-1).tolist()
        return json.dumps(body).encode(), {}
    raw = x.astype("<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(body).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def hostile_json(data: bytes, rng: random.Random) -> bytes:
    """The JSON header with one value replaced by a hostile one, somewhere in its tree."""
    try:
        tree = json.loads(data)
    except ValueError:
        return data
    nodes: list[Any] = [tree]
    spots: list[tuple[Any, Any]] = []
    while nodes:
        node = nodes.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
        for key in keys:
            spots.append((node, key))
            nodes.append(node[key])
    if spots:
        node, key = rng.choice(spots)
        node[key] = rng.choice([*HOSTILE_VALUES, [rng.choice(HOSTILE_DIMS) for _ in range(rng.choice((1, 3, 9)))]])
    return json.dumps(tree).encode()


def rest_mutant(manifest: Manifest, rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of one mutated REST request."""
    body, headers = infer_body(manifest, rng, binary=rng.random() < 0.5)
    path = f"/v2/models/{manifest.name}/infer"
    roll = rng.random()
    if roll < 0.35:
        body = mutate(body, rng)
    elif roll < 0.7:
        length = int(headers.get("Inference-Header-Content-Length", len(body)))
        head = hostile_json(body[:length], rng)
        body = head + body[length:]
        if headers:
            headers = {"Inference-Header-Content-Length": str(len(head))}
    elif roll < 0.8:
        headers = {"Inference-Header-Content-Length": rng.choice(["-1", "x", "99999999", "", "1e3", str(2**70)])}
    elif roll < 0.9:
        version = rng.choice(["0", "-1", "\u00b2", "9" * 30, "x"])
        path = f"/v2/models/{rng.choice([manifest.name, 'n' * 3000, '%00'])}/versions/{version}/infer"
    else:
        path = rng.choice(["/v2/repository/index", "/v2/models/x/ready", "/v2/health/ready"])
        body = mutate(b'{"ready": true}', rng)
    return path, body, headers


async def send_rest(http: aiohttp.ClientSession, base: str, mutants: list[tuple[str, bytes, dict[str, str]]],
                    tally: Tally, in_flight: int = 8) -> None:
    gate = asyncio.Semaphore(in_flight)

    async def one(path: str, body: bytes, headers: dict[str, str]) -> None:
        async with gate:
            try:
                async with http.post(base + path, data=body, headers=headers, timeout=TIMEOUT) as reply:
                    answer = await reply.read()
                    if reply.status >= 400:
                        assert "error" in json.loads(answer), (path, reply.status, answer[:200])
                    tally.codes[reply.status] += 1
            except TimeoutError:
                tally.codes["hang"] += 1

    tally.messages += len(mutants)
    await asyncio.gather(*(one(*m) for m in mutants))


def frames(manifest: Manifest, rng: random.Random, count: int) -> list[str | bytes]:
    """A socket's mutated frames: text (proto JSON) or binary (protobuf), chunks mostly."""
    x = np.random.default_rng(rng.randrange(2**32)).standard_normal((3, manifest.input.features)).astype("<f4")
    chunk = npb.StreamRequest(seq=1, chunk=npb.Chunk(input=array_to_tensor(x)))
    text = json.dumps({"seq": 1, "chunk": {"input": {"dtype": "DATA_TYPE_FLOAT32", "shape": [3, x.shape[1]],
                                                     "data": base64.b64encode(x.tobytes()).decode()}}}).encode()
    out: list[str | bytes] = []
    for _ in range(count):
        if rng.random() < 0.5:
            out.append(mutate(chunk.SerializeToString(), rng))
        else:
            mutated = hostile_json(text, rng) if rng.random() < 0.5 else mutate(text, rng)
            out.append(mutated.decode(errors="replace"))
    return out


async def socket(http: aiohttp.ClientSession, url: str, mutants: list[str | bytes], tally: Tally) -> None:
    """A valid open, then the mutants until the server closes; every answer and the close code counted."""
    tally.messages += len(mutants)
    async with http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=20.0)) as ws:
        await ws.send_str(json.dumps({"seq": 0, "open": {}}))
        await ws.receive(timeout=20.0)
        try:
            for frame in mutants:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
                message = await ws.receive(timeout=20.0)
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    tally.codes["answer"] += 1
                    continue
                tally.codes[ws.close_code or "closed"] += 1
                return
            await ws.send_str(json.dumps({"seq": 9, "end": {}}))
            await ws.receive(timeout=20.0)
            tally.codes[ws.close_code or "closed"] += 1
        except TimeoutError:
            tally.codes["hang"] += 1
        except (ConnectionResetError, aiohttp.ClientConnectionError):
            tally.codes[ws.close_code or "reset"] += 1
