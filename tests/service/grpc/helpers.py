"""A real server for gRPC tests (`run_in_thread`: `serve()` on port 0 in a background thread) and the parity oracle.

The server has its own event loop in its own thread, so blocking clients (our `Client`, `tritonclient`) and
asyncio clients (on the test's loop) can both call it. Every server started is stopped at teardown.

    def test_x(start_server):
        server = start_server(max_batch_size=1)          # any Settings field as a keyword
        with Client(server.target) as client: ...
        server.active_sessions("vowels_lstm")            # the Prometheus gauge, as /metrics shows it
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from modelrepo import Manifest
from service.engine.metrics import Metrics
from service.engine.model import ServedModel
from service.engine.registry import Registry
from service.engine.runtime import Runtime
from service.grpc.server import Serving, serve
from service.settings import Settings
from tests.service.helpers import random_input
from tests.service.helpers import reference as onnx_reference

T = TypeVar("T")
START_TIMEOUT_S = 120.0  # a safety net against a hung start, never a timed assertion


@dataclass
class RunningServer:
    settings: Settings
    serving: Serving
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.serving.port}"

    @property
    def registry(self) -> Registry:
        return self.serving.registry

    @property
    def metrics(self) -> Metrics:
        return self.serving.metrics

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT_S)

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def active_sessions(self, model: str) -> float:
        return self.metric("seqserve_active_sessions", model=model)

    def stop(self, grace: float = 0.0) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call(self.serving.shutdown(grace))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


def run_in_thread(settings: Settings) -> RunningServer:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="seqserve-test-server", daemon=True)
    thread.start()
    try:
        serving = asyncio.run_coroutine_threadsafe(serve(settings), loop).result(START_TIMEOUT_S)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        raise
    return RunningServer(settings, serving, loop, thread)


class Reference:
    """Whole-sequence runs straight on onnxruntime, from the manifest's initial state: the parity oracle."""

    def __init__(self, manifests: dict[str, Manifest]) -> None:
        self._manifests = manifests

    def run(self, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs `{name: (time, size)}` of one whole sequence `x` (time, features)."""
        outputs = onnx_reference(model, x[None].astype(self._manifests[model].input.dtype))
        return {o.name: outputs[o.name][0] for o in self._manifests[model].outputs}

    def sequence(self, model: str, steps: int, rng: np.random.Generator) -> np.ndarray:
        """A random sequence `(steps, features)` for `model`."""
        return random_input(self._manifests[model], rng, (steps,))

    @staticmethod
    def chunks(x: np.ndarray, rng: np.random.Generator, max_len: int = 13) -> list[np.ndarray]:
        """`x` cut into consecutive chunks of random lengths 1..max_len."""
        cuts, start = [], 0
        while start < len(x):
            cuts.append(x[start:start + int(rng.integers(1, max_len + 1))])
            start += len(cuts[-1])
        return cuts




def runtime_of(model: ServedModel) -> Runtime:
    """The onnxruntime wrapper a served model runs on (for fault injection; the one place that knows where it is)."""
    return model._batcher._runtime  # type: ignore[attr-defined]


def rpc_status(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """How a blocking call ended: (code, details); (OK, "") if it returned."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""
