"""Clients that follow the documented meaning of every answer, for the store chaos tests.

Each driver runs one model's sequences over and over in its own thread, through a real client (tritonclient for
the Triton front, our SDK with its own resume for the native front), and checks every OK answer against the
whole-sequence run the moment it arrives. An error is handled exactly as the documentation says it may be: the
recovery it prescribes must lead to right outputs, else the next OK answer fails the check. What each driver saw
is counted (`seen`), and `progress` is a condition the test waits on (real events, no sleeps as sync).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from seqserve_client import Client
from seqserve_client.common import ServerError
from seqserve_client.resume import RetryPolicy

TOLERANCE = 1e-4
CLIENT_RETRY_PAUSE_S = 0.05  # a client's pause before it retries a refused request (a backoff, not a sync)
PATIENT = RetryPolicy(attempts=40, backoff_s=0.05, max_backoff_s=0.25)  # the SDK's resume, patient enough for a stall


@dataclass
class Run:
    """One sequence: its chunks and the whole-sequence run's output, cut like the chunks."""

    model: str
    chunks: list[np.ndarray]
    want: list[np.ndarray]


def make_run(reference, model: str, rng: np.random.Generator, steps: int = 24) -> Run:  # type: ignore[no-untyped-def]
    x = reference.sequence(model, steps, rng)
    chunks = reference.chunks(x, rng, max_len=4)
    whole = next(iter(reference.run(model, x).values()))
    cuts = np.cumsum([0, *(len(c) for c in chunks)])
    return Run(model, chunks, [whole[a:b] for a, b in itertools.pairwise(cuts)])


@dataclass
class Driver:
    """Runs `run` again and again until `stop` is set; `failure` holds what broke a documented meaning."""

    name: str
    run: Run
    target: str
    progress: threading.Condition
    stop: threading.Event = field(default_factory=threading.Event)
    seen: Counter[str] = field(default_factory=Counter)
    oks: int = 0
    completed: int = 0
    failure: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(120)
        assert not self.thread.is_alive(), f"{self.name} hangs"
        if self.failure is not None:
            raise self.failure

    def ok(self, k: int, got: np.ndarray) -> None:
        np.testing.assert_allclose(got, self.run.want[k], atol=TOLERANCE, rtol=0,
                                   err_msg=f"{self.name}: an OK answer to chunk {k} differs from the whole run")
        with self.progress:
            self.oks += 1
            self.progress.notify_all()

    def _main(self) -> None:
        try:
            while not self.stop.is_set():
                self.sequence()
                self.completed += 1
        except BaseException as exc:  # reported by join
            self.failure = exc
            with self.progress:
                self.progress.notify_all()

    def sequence(self) -> None:
        raise NotImplementedError


class TritonDriver(Driver):
    """One Triton sequence per round: START ... END. UNAVAILABLE (or CANCELLED by a replica that stops): not
    applied, send it again. ABORTED 'unknown' or
    NOT_FOUND (the store lost it): restart with START. RESOURCE_EXHAUSTED on START: nothing admitted, try later."""

    sequence_id: int = 0

    def sequence(self) -> None:
        client = triton.InferenceServerClient(self.target)
        self.sequence_id += 1
        sid = f"{self.name}-{self.sequence_id}"
        k, attempts = 0, 0
        while k < len(self.run.chunks):
            attempts += 1
            assert attempts < 2000, f"{self.name}: no progress"
            chunk = self.run.chunks[k][None]
            tensor = triton.InferInput("input", list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            try:
                result = client.infer(self.run.model, [tensor], sequence_id=sid, sequence_start=k == 0,
                                      sequence_end=k == len(self.run.chunks) - 1)
            except InferenceServerException as exc:
                code = str(exc.status()).removeprefix("StatusCode.")
                self.seen[code] += 1
                # CANCELLED: a replica stopping refused a request its handler never took (a recycled worker)
                if code in ("UNAVAILABLE", "CANCELLED") or (code == "RESOURCE_EXHAUSTED" and k == 0):
                    time.sleep(CLIENT_RETRY_PAUSE_S)
                    continue
                if (code == "ABORTED" and "sequence_start" in (exc.message() or "")) or code == "NOT_FOUND":
                    k = 0
                    continue
                raise
            (out,) = result.get_response().outputs
            self.ok(k, result.as_numpy(out.name)[0])
            k += 1


class NativeDriver(Driver):
    """One SDK stream per round; the SDK resumes by itself (UNAVAILABLE, ABORTED). NOT_FOUND (the store lost the
    session) or a resume that ran out of attempts: a new stream from the start."""

    def sequence(self) -> None:
        with Client(self.target) as client:
            k = 0
            while k < len(self.run.chunks):
                try:
                    stream = client.stream(self.run.model, retry=PATIENT)
                    for k in range(len(self.run.chunks)):
                        self.ok(k, next(iter(stream.send(self.run.chunks[k]).values())))
                    k = len(self.run.chunks)
                    self.seen["resumes"] += stream.resumes
                    stream.close()
                except ServerError as exc:
                    self.seen[exc.code.name] += 1
                    if exc.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.RESOURCE_EXHAUSTED):
                        raise
                    time.sleep(CLIENT_RETRY_PAUSE_S)
                    k = 0


def wait_for(progress: threading.Condition, check, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Block until `check()` holds (re-checked at every driver event); a safety net, never a timed assertion."""
    with progress:
        assert progress.wait_for(check, timeout), f"timed out waiting for {what}"
