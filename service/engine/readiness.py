"""What "ready" means for the server (`--require-models`): which of the model versions found must be served.

`any` (the default): at least one model is served; `all`: every model is served and no version its version policy
lists failed to load; `NAME,NAME,...`: each
named model has a served version. A server whose requirement is not met still runs (its statuses say why) but
reports NOT_SERVING on health and `ServerReady` false, so a balancer never sends it traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.engine.registry import ModelStatus as Status


def unmet(requirement: str, statuses: Sequence[Status]) -> str | None:
    """Why the requirement is not met by `statuses` (one line), or None when it is."""
    served = {s.name for s in statuses if s.ready}
    if requirement == "any":
        if served:
            return None
        return "no model is served (the repository is empty)" if not statuses else "no model loaded: " + _why(statuses)
    if requirement == "all":  # every model served, and no version its policy lists failed to load
        failed = [s for s in statuses if s.failed or s.name not in served]
        if not statuses:
            return "no model is served (the repository is empty)"
        return None if not failed else "not every model loaded: " + _why(failed)
    missing = [name for name in parse_names(requirement) if name not in served]
    return None if not missing else f"required models not served: {', '.join(missing)}"


def parse_names(requirement: str) -> list[str]:
    return [name.strip() for name in requirement.split(",") if name.strip()]


def _why(statuses: Sequence[Status]) -> str:
    return "; ".join(f"{s.name} version {s.version}: {s.reason}" for s in statuses[:5])
