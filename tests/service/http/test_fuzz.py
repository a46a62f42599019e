"""The bounded live fuzz of the web front (`make fuzz` runs a longer one): mutated REST requests and WebSocket
frames through the real server. No answer is a 500, a 1011 or an INTERNAL close (4013), none hangs, every error
body is JSON, the server stays alive, and a clean REST sequence run alongside gets its whole-sequence outputs."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

import aiohttp
import numpy as np
import tritonclient.http as triton_http

from tests.service.grpc.helpers import Reference, RunningServer
from tests.service.helpers import MANIFESTS
from tests.service.http import fuzzing

MESSAGES = int(os.environ.get("FUZZ_MESSAGES", "6000")) // 6  # the gRPC fuzz's share; `make fuzz` sets more
PER_SOCKET = 10
SEED = int(os.environ.get("FUZZ_SEED", "12"))
MODEL = "vowels_lstm"


def test_mutated_rest_requests_and_frames_never_get_internal_nor_hang(
    start_server: Callable[..., RunningServer], reference: Reference
) -> None:
    server = start_server(max_message_bytes=1 << 20)
    base = f"http://127.0.0.1:{server.serving.http_port}"
    rng = random.Random(SEED)
    tally = fuzzing.Tally()

    async def fuzz() -> None:
        async with aiohttp.ClientSession() as http:
            rest = [fuzzing.rest_mutant(MANIFESTS[MODEL], rng) for _ in range(MESSAGES // 2)]
            await fuzzing.send_rest(http, base, rest, tally)
            url = base.replace("http", "ws") + f"/v2/models/{MODEL}/stream"
            for _ in range(MESSAGES // 2 // PER_SOCKET):
                await fuzzing.socket(http, url, fuzzing.frames(MANIFESTS[MODEL], rng, PER_SOCKET), tally)

    asyncio.run(fuzz())
    print(f"web fuzz: {tally.messages} mutated messages; answers: {dict(tally.codes.most_common())}")
    assert tally.messages >= MESSAGES - PER_SOCKET
    assert tally.bad() == {}, tally.codes
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.serving.http_port}")
    assert client.is_server_live()
    x = reference.sequence(MODEL, 20, np.random.default_rng(SEED))
    pieces = []
    for i, chunk in enumerate((x[:7], x[7:])):
        tensor = triton_http.InferInput("input", [1, *chunk.shape], "FP32")
        tensor.set_data_from_numpy(chunk[None])
        pieces.append(client.infer(MODEL, [tensor], sequence_id=424242, sequence_start=i == 0,
                                   sequence_end=i == 1).as_numpy("logits")[0])
    np.testing.assert_allclose(np.concatenate(pieces), reference.run(MODEL, x)["logits"], atol=1e-5)
