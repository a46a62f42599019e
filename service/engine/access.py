"""Who is asking: the client of the request being served (a principal with authentication, else its peer host),
what it may use, and the per-client session quota. No gRPC: the auth interceptor sets `CLIENT` per call.

`CLIENT` is a context variable: set once at the start of each RPC, it follows the request into the data plane,
the sequence table (its done-callbacks copy the context they were added in) and the stream's reader task.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass

from service.engine.errors import PermissionDenied, ResourceExhausted, clip


@dataclass(frozen=True)
class Client:
    key: str  # the quota's key: the principal, or the peer's host without authentication
    namespace: str = ""  # where its Triton sequence ids live: the principal; "" (shared) without authentication
    models: frozenset[str] | None = None  # the models it may use; None = every model
    max_sessions: int = 0  # open sessions at most, over every model; 0 = no limit
    metrics: bool = False  # may read /metrics (with authentication on)
    control: bool | None = None  # may load and unload models; None: no authentication (anyone may)

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def check_model(self, model: str) -> None:
        """`PermissionDenied` unless the client may use `model` (the same answer whether `model` exists or not)."""
        if not self.may_use(model):
            raise PermissionDenied(f"principal {clip(self.key)} may not use model {clip(model)}")


    def check_control(self, model: str) -> None:
        """`PermissionDenied` unless the client may load and unload `model` (its grant says `"control": true`)."""
        self.check_model(model)
        if self.control is False:
            raise PermissionDenied(f"principal {clip(self.key)} may not load or unload models (its grant has no "
                                   '"control": true)')


ANONYMOUS = Client(key="")
CLIENT: contextvars.ContextVar[Client] = contextvars.ContextVar("client", default=ANONYMOUS)


class SessionQuota:
    """Open sessions per client key, over every model and both fronts; beyond a client's limit,
    `ResourceExhausted` (so one client cannot fill a model's pool and lock the others out)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, client: Client) -> Callable[[], None] | None:
        """Count one more session for `client` (or raise); the release to call once it closes (None: no limit)."""
        if client.max_sessions <= 0:
            return None
        held = self._open.get(client.key, 0)
        if held >= client.max_sessions:
            raise ResourceExhausted(f"client {clip(client.key)} holds {held} open sessions, its quota; end one first")
        self._open[client.key] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self._open[client.key] - 1
                if left:
                    self._open[client.key] = left
                else:
                    del self._open[client.key]

        return release
