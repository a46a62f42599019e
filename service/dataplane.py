"""The data plane: KServe v2 / Triton semantics over the engine, shared by every front; no protobuf.

A front converts its messages into engine terms, asks the data plane, and converts the answers back: model lookup
and readiness, whole-sequence (stateless) inference, Triton sequences (`sequence_id` with START / END, one engine
`Session` each, in the engine's `Sequences` table) and the request counters by model and status code. The native
`Stream` RPC opens its session here too, so every front meets the same models, sessions, batchers and limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from service.engine.access import CLIENT, SessionQuota
from service.engine.errors import FailedPrecondition, InvalidInput, SeqServeError, SequenceNotFound
from service.engine.readiness import unmet
from service.engine.sequences import SequenceFlags, Sequences, StepResult
from service.engine.state.codec import decode_answer
from service.engine.state.store import new_token, stream_key, valid_token

if TYPE_CHECKING:
    from service.engine.metrics import Metrics
    from service.engine.model import ServedModel
    from service.engine.registry import ModelStatus, Registry
    from service.engine.sessions import Session

UNKNOWN_MODEL = "unknown"  # the metrics label of a request naming no known model: clients cannot mint labels
Arrays = dict[str, np.ndarray]
T = TypeVar("T")
EXTENSIONS = ("model_configuration", "statistics", "parameters", "sequence", "sequence(string_id)")


@dataclass(frozen=True)
class InferRequest:
    """One inference in engine terms: the model's input, its place in a sequence, the outputs to return."""

    x: np.ndarray  # (batch, time, features) of the model's dtype
    sequence: SequenceFlags | None  # None: a stateless run of whole sequences from the initial state
    outputs: tuple[str, ...]  # names to return in this order; state outputs (e.g. "hn") allowed


class DataPlane:
    def __init__(self, registry: Registry, metrics: Metrics, require_models: str = "any") -> None:
        self.registry = registry
        self.unready = unmet(require_models, registry.statuses())  # why the server is not ready (None: it is)
        self._metrics = metrics
        self.quota = SessionQuota()
        self._sequences = Sequences(self._open_for_client)

    # -- server and model state --------------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        """(name, version, protocol extensions)."""
        return "seqserve", version("seqserve"), EXTENSIONS

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
        CLIENT.get().check_model(name)
        await self.registry.control.load(name)
        return [s for s in self.statuses() if s.name == name]

    async def unload_model(self, name: str, force: bool) -> tuple[int, list[ModelStatus]]:
        """Unload every version of `name`: (live sessions ended by `force`, its versions after)."""
        CLIENT.get().check_model(name)
        ended = await self.registry.control.unload(name, force)
        return ended, [s for s in self.statuses() if s.name == name]

    # -- inference ---------------------------------------------------------------------------------------------
    def start(self, model: ServedModel, request: InferRequest, then: Callable[[Arrays], T]) -> asyncio.Future[T]:
        """Start one inference: a future of `then(outputs)`, the requested outputs `{name: (batch, time, size)}`
        in the order asked for (`then` builds the front's answer in place, on the event loop, no extra hop).

        A sequence request takes its place in its sequence before this returns (see `Sequences.submit`); errors
        found at once raise here. A stateless request runs whole sequences through the batcher.
        """
        if request.sequence is None:
            return asyncio.ensure_future(self._stateless(model, request, then))
        if request.x.shape[0] != 1:
            raise InvalidInput(f"a sequence request carries one sequence: batch size 1, got {request.x.shape[0]}")
        state_outputs = {pair.output for pair in model.manifest.state}
        want_state = any(name in state_outputs for name in request.outputs)

        def respond(result: StepResult) -> T:
            outputs = {name: a[np.newaxis] for name, a in result.outputs.items()}  # (1, time, size)
            state = {name: a[np.newaxis] for name, a in (result.state or {}).items()}
            return then(_pick(model, request, outputs, state))

        return self._sequences.submit(model, request.sequence, request.x[0], respond, want_state=want_state,
                                      namespace=CLIENT.get().namespace)

    async def infer_with_state(self, model: ServedModel, x: np.ndarray, state: Arrays | None) -> tuple[Arrays, Arrays]:
        """Whole sequences from explicit state (batch-first) or the initial state: (outputs, final state)."""
        return await model.infer(x, state)

    def open_session(self, name: str, version: int | None, on_close: Callable[[], None] | None = None) -> Session:
        """A native stream's session, counted against the client's session quota; `on_close` runs once it closes.

        With a session store it is resumable by its token (`store.token_of(session.key)`)."""
        model = self.model(name, version)
        if model.store is None:
            return self._open_for_client(model, None, on_close)
        key = stream_key(model.name, model.version, new_token(), CLIENT.get().namespace)
        session = self._open_for_client(model, key, on_close)
        session.answers = True
        return session

    async def resume_session(
        self, name: str, version: int | None, token: str, on_close: Callable[[], None] | None = None
    ) -> tuple[Session, list[Arrays]]:
        """Continue a native stream's session from the store: the session and the last answers it kept."""
        model = await self._resumed_version(name, version, token)
        if model.store is None:
            raise FailedPrecondition("resuming needs a shared session store (--session-store redis://...); "
                                     "this server keeps sessions in memory, so they end with their stream")
        if not valid_token(token):
            raise InvalidInput("malformed resume token")
        key = stream_key(model.name, model.version, token, CLIENT.get().namespace)
        stored = await model.store.load(key, recent=True)
        if stored is None:
            raise SequenceNotFound(f"no session of model {model.name!r} to resume for this token "
                                   "(ended, expired or never opened)")
        session = self._open_for_client(model, key, on_close)
        session.answers = True
        try:
            session.restore(stored)
            recent = [decode_answer(answer) for answer in stored.recent]
        except BaseException:
            session.close()
            raise
        return session, recent

    async def _resumed_version(self, name: str, version: int | None, token: str) -> ServedModel:
        """Without a version, a stored session resumes on the version it started on, if it is still loaded."""
        newest = self.model(name, version)
        if version is not None or newest.store is None or not valid_token(token):
            return newest
        for copy in self.registry.instances(name):
            if copy is not newest and await newest.store.load(
                    stream_key(name, copy.version, token, CLIENT.get().namespace)) is not None:
                return copy
        return newest

    async def end_session(self, session: Session) -> None:
        """A native stream ended by its client: the stored session goes too (a cut or broken stream keeps it)."""
        store = session.model.store
        if session.key is not None and store is not None and not session.closed:
            await store.delete(session.key)

    def _open_for_client(
        self, model: ServedModel, key: str | None = None, on_close: Callable[[], None] | None = None
    ) -> Session:
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

    async def _stateless(self, model: ServedModel, request: InferRequest, then: Callable[[Arrays], T]) -> T:
        outputs, state = await model.infer(request.x)
        return then(_pick(model, request, outputs, state))

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
    by_output = {pair.output: state[pair.input] for pair in model.manifest.state if pair.input in state}
    return {name: outputs[name] if name in outputs else by_output[name] for name in request.outputs}
