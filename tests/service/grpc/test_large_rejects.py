"""Large rejected requests are freed at once: nothing keeps a 4 MiB request alive until Python's next full
collection (grpc keeps an abort's traceback in a reference cycle; the error interceptor aborts without the
request in its frame)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from service import memory

if TYPE_CHECKING:
    from tests.service.grpc.helpers import RunningServer

REQUESTS = 30
BIG_ID = "x" * (4 << 20)  # a 4 MiB sequence id: refused (at most 256 characters)


@pytest.mark.skipif(memory.heap() is None, reason="needs glibc's mallinfo2")
def test_rejected_4_mib_sequence_ids_are_freed_without_waiting_for_the_gc(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    client = triton.InferenceServerClient(server.target)
    x = np.zeros((1, 3, 13), np.float32)

    def send() -> str:
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        try:
            client.infer("vowels_lstm", [tensor], sequence_id=BIG_ID, sequence_start=True)
        except InferenceServerException as exc:
            return str(exc.status())
        return "OK"

    assert send() == "StatusCode.INVALID_ARGUMENT"
    gc.collect()
    gc.disable()  # only what reference counting frees counts: cycles would wait for a collection
    try:
        before = memory.heap()["in_use"]  # type: ignore[index]
        assert {send() for _ in range(REQUESTS)} == {"StatusCode.INVALID_ARGUMENT"}
        grown = memory.heap()["in_use"] - before  # type: ignore[index]
    finally:
        gc.enable()
        client.close()
    assert grown < 8 * len(BIG_ID), f"{grown / 2**20:.0f} MiB still in use after {REQUESTS} rejected requests"
