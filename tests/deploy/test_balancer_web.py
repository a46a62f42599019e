"""The web front through nginx (deploy/nginx.conf with deploy/balancer-compose/web.conf) in front of two replicas
on one Redis: WebSocket upgrades pass through, a REST sequence spread over both replicas equals the whole run,
and a socket whose replica stops (1001) resumes on the other with its token, losing and repeating nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
from typing import Any

import aiohttp
import numpy as np
import tritonclient.http as triton_http

from tests.deploy.topology import Balancer, Replica
from tests.service.helpers import MANIFESTS, random_input, reference

MODEL = "vowels_lstm"


def chunk(seq: int, x: np.ndarray) -> str:
    data = base64.b64encode(np.ascontiguousarray(x, "<f4").tobytes()).decode()
    return json.dumps({"seq": seq, "chunk": {"input": {"dtype": "DATA_TYPE_FLOAT32", "shape": list(x.shape),
                                                       "data": data}}})


def logits(answer: dict[str, Any]) -> np.ndarray:
    tensor = answer["result"]["outputs"]["logits"]
    return np.frombuffer(base64.b64decode(tensor["data"]), "<f4").reshape([int(d) for d in tensor["shape"]])


def test_websocket_and_rest_through_nginx_with_a_resume_after_a_replica_stops(
    shared_topology: tuple[Replica, Replica, Balancer],
) -> None:
    first, second, balancer = shared_topology
    assert balancer.http_target is not None
    x = random_input(MANIFESTS[MODEL], np.random.default_rng(8), (24,)).astype(np.float32)
    whole = reference(MODEL, x[None])["logits"][0]
    url = f"ws://{balancer.http_target}/v2/models/{MODEL}/stream"

    async def stream() -> tuple[np.ndarray, int | None]:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url, protocols=("seqserve.v1",))
            await ws.send_str(json.dumps({"seq": 0, "open": {}}))
            opened = json.loads((await ws.receive()).data)["opened"]
            pieces = []
            for i in range(2):
                await ws.send_str(chunk(i + 1, x[i * 8:(i + 1) * 8]))
                pieces.append(logits(json.loads((await ws.receive()).data)))
            stopping = [r for r in (first, second) if r.active_sessions() == 1]
            assert len(stopping) == 1
            await asyncio.to_thread(stopping[0].kill, signal.SIGTERM)  # hands its sessions off at once
            message = await ws.receive()  # the close frame's code (the socket's own says 1006 once the process is gone)
            assert message.type == aiohttp.WSMsgType.CLOSE
            code = message.data
            async with http.ws_connect(url) as again:  # nginx sends it to the replica left
                await again.send_str(json.dumps({"seq": 0, "open": {"resume": opened["resumeToken"]}}))
                resumed = json.loads((await again.receive()).data)["opened"]
                assert resumed["position"] == "2"
                await again.send_str(chunk(3, x[16:]))
                pieces.append(logits(json.loads((await again.receive()).data)))
                await again.send_str(json.dumps({"seq": 4, "end": {}}))
                await again.receive()
                assert again.close_code == 1000
            return np.concatenate(pieces), code

    got, cut_code = asyncio.run(stream())
    assert cut_code == 1001
    np.testing.assert_allclose(got, whole, atol=1e-5)

    client = triton_http.InferenceServerClient(balancer.http_target)  # the replica left, via nginx
    pieces = []
    for i in range(3):
        tensor = triton_http.InferInput("input", [1, 8, 12], "FP32")
        tensor.set_data_from_numpy(x[None, i * 8:(i + 1) * 8])
        result = client.infer(MODEL, [tensor], sequence_id="through-nginx", sequence_start=i == 0,
                              sequence_end=i == 2)
        pieces.append(result.as_numpy("logits")[0])
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-5)
