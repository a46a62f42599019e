"""The data plane: KServe v2 / Triton semantics over the engine, shared by every front; no protocol code.

A front decodes its messages, asks the data plane, and encodes the answers. The data plane owns the whole request:
the model lookup and its authorization (`CLIENT`, set by the front's authentication), readiness, the request
counters by model and status code (once, here: `infer`, and each stream request in `StreamSession`), whole-sequence
(stateless) inference, Triton sequences (`sequence_id` with START / END, one engine `Session` each, in the engine's
`Sequences` table) and the native stream sessions (`stream.py`), so every front meets the same models, sessions,
batchers, limits and counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from seqserve_client.codec import Arrays
from service.dataplane.kserve import InferRequest, Request, parse_version
from service.dataplane.status import code_of
from service.engine.access import CLIENT, SessionQuota
from service.engine.done import when_done
from service.engine.errors import FailedPrecondition, InvalidInput, SeqServeError
from service.engine.inputs import batch_size, row
from service.engine.readiness import unmet
from service.engine.sequences import SequenceFlags, Sequences, StepResult

if TYPE_CHECKING:
    from service.engine.metrics import Metrics
    from service.engine.model import ServedModel
    from service.engine.registry import ModelStatus, Registry
    from service.engine.sessions import Session

UNKNOWN_MODEL = "unknown"  # the metrics label of a request naming no known model: clients cannot mint labels
T = TypeVar("T")
EXTENSIONS = ("model_configuration", "statistics", "parameters", "sequence", "sequence(string_id)")
Then = Callable[["ServedModel", Arrays], T]  # builds the front's answer from the outputs, on the loop, in place


class DataPlane:
    def __init__(self, registry: Registry, metrics: Metrics, require_models: str = "any") -> None:
        self.registry = registry
        self._require_models = require_models
        self._metrics = metrics
        self.quota = SessionQuota()
        self._sequences = Sequences(self.open_for_client, registry.instances)

    # -- server and model state --------------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        """(name, version, protocol extensions)."""
        return "seqserve", version("seqserve"), EXTENSIONS

    @property
    def unready(self) -> str | None:
        """Why the server is not ready (None: it is), as the models loaded now stand (they come and go)."""
        return unmet(self._require_models, self.registry.statuses())

    def ready(self) -> bool:
        return self.unready is None and not self.registry.draining

    def model(self, name: str, version: int | None = None) -> ServedModel:
        """The served version (newest ready one by default); `ModelNotFound` / `Unavailable` with the reason;
        `PermissionDenied` first if the client may not use `name`."""
        CLIENT.get().check_model(name)
        return self.registry.get(name, version)

    def sequence_model(self, name: str, version: int | None, flags: SequenceFlags | None) -> ServedModel:
        """The version a request goes to: an open Triton sequence stays on the version it started on (which may be
        draining, docs/model-control.md); anything else goes to `model(name, version)`."""
        if flags is None:
            return self.model(name, version)
        client = CLIENT.get()
        client.check_model(name)
        why = self._sequences.ended(client.namespace, name, flags.sequence_id, flags.start)
        if not flags.start:
            newest = self.registry.tables.serving.get(name)
            if version is None and newest and self._sequences.holder(client.namespace, name, newest.version,
                                                                     flags.sequence_id):
                return newest  # the common case, without a list built
            for copy in self.registry.instances(name):
                held = self._sequences.holder(client.namespace, name, copy.version, flags.sequence_id)
                if (version is None or copy.version == version) and held:
                    return copy
            if why is not None:  # ended by an unload or a drain timeout: say so, not just "not open"
                raise FailedPrecondition(why)
        return self.model(name, version)

    def model_ready(self, name: str, version: int | None) -> bool:
        try:
            self.model(name, version)
        except SeqServeError:
            return False
        return not self.registry.draining

    def versions(self, name: str) -> list[int]:
        return sorted(s.version for s in self.registry.statuses() if s.name == name)

    def ready_models(self) -> list[ServedModel]:
        """Every served version the client may use."""
        client = CLIENT.get()
        return [m for m in self.registry.models() if client.may_use(m.manifest.name)]

    def statuses(self) -> list[ModelStatus]:
        """Every model version found that the client may use, served or not."""
        client = CLIENT.get()
        return [s for s in self.registry.statuses() if client.may_use(s.name)]

    # -- model control (docs/model-control.md) ------------------------------------------------------------------
    async def load_model(self, name: str) -> list[ModelStatus]:
        """Load or reload `name` from the repository; its versions after."""
        CLIENT.get().check_control(name)
        await self.registry.control.load(name)
        return [s for s in self.statuses() if s.name == name]

    async def unload_model(self, name: str, force: bool) -> tuple[int, list[ModelStatus]]:
        """Unload every version of `name`: (live sessions ended by `force`, its versions after)."""
        CLIENT.get().check_control(name)
        ended = await self.registry.control.unload(name, force)
        return ended, [s for s in self.statuses() if s.name == name]

    # -- inference ---------------------------------------------------------------------------------------------
    def infer(self, name: str, version: int | str | None, request: Request, then: Then[T]) -> asyncio.Future[T]:
        """One inference of model `name` (version: the served default when None or ""; text is KServe's, parsed
        strictly), counted once under `name`: look the model up (and authorize it; an open sequence stays on the
        version it started on), prepare the request for it, start it. A future of `then(model, outputs)`, the
        requested outputs `{name: (batch, time, size)}` in the order asked for.

        A sequence request takes its place in its sequence before this returns (see `Sequences.submit`); errors
        found at once raise here. A stateless request runs whole sequences through the batcher.
        """
        try:
            sequence = request.sequence()
            model = self.sequence_model(name, parse_version(version) if isinstance(version, str) else version,
                                        sequence)
            future = self._start(model, request.prepare(model.manifest, sequence), then)
        except Exception as exc:
            self.count(name, code_of(exc).name)
            raise
        when_done(future, partial(self._counted, name))
        return future

    def _start(self, model: ServedModel, request: InferRequest, then: Then[T]) -> asyncio.Future[T]:
        if request.sequence is None:
            return asyncio.ensure_future(self._stateless(model, request, then))
        if request.state is not None:
            raise InvalidInput("explicit state goes with stateless requests only, not with a sequence")
        if (batch := batch_size(request.x)) != 1:
            raise InvalidInput(f"a sequence request carries one sequence: batch size 1, got {batch}")
        want_state = any(name in model.state_input_of for name in request.outputs)

        def respond(result: StepResult) -> T:
            ran = result.model or model  # the version the sequence is on (found stored on an older one: that one)
            picked = _pick(ran, request, result.outputs, result.state or {})
            return then(ran, {name: a[np.newaxis] for name, a in picked.items()})  # (1, time, size)

        return self._sequences.submit(model, request.sequence, row(request.x, 0), respond, want_state=want_state,
                                      namespace=CLIENT.get().namespace)

    def _counted(self, name: str, future: asyncio.Future[object]) -> None:
        if future.cancelled():  # the client went away: nothing to count
            return
        failure = future.exception()
        self.count(name, "OK" if failure is None else code_of(failure).name)

    def open_for_client(
        self, model: ServedModel, key: str | None = None, on_close: Callable[[], None] | None = None
    ) -> Session:
        """A session of `model`, counted against the client's session quota; `on_close` runs once it closes."""
        release = self.quota.acquire(CLIENT.get())
        if release is None:
            return model.open_session(key, on_close)

        def closed() -> None:
            release()
            if on_close is not None:
                on_close()

        try:
            return model.open_session(key, closed)
        except BaseException:
            release()
            raise

    async def _stateless(self, model: ServedModel, request: InferRequest, then: Then[T]) -> T:
        outputs, state = await model.infer(request.x, request.state)
        return then(model, _pick(model, request, outputs, state))

    # -- accounting --------------------------------------------------------------------------------------------
    def label(self, name: str) -> str:
        """The metrics label for a requested model name (a set lookup: on every request)."""
        return name if name in self.registry.tables.versions else UNKNOWN_MODEL  # models come and go

    def count(self, name: str, code: str) -> None:
        """One request of model `name` (as the client named it) answered with status `code` (e.g. "OK")."""
        self._metrics.count_request(self.label(name), code)

    def close(self) -> None:
        self._sequences.close()


def _pick(model: ServedModel, request: InferRequest, outputs: Arrays, state: Arrays) -> Arrays:
    """The requested outputs in the order asked for; state outputs under their output names."""
    return {name: outputs[name] if name in outputs else state[model.state_input_of[name]] for name in request.outputs}
