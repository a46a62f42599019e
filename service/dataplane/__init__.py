"""The data plane (`plane.py`): KServe v2 / Triton semantics and stream sessions over the engine, shared by every
front, with no protocol code: KServe requests (`kserve.py`), native stream sessions (`stream.py`) and the one
status table (`status.py`)."""

from service.dataplane.kserve import InferRequest
from service.dataplane.plane import UNKNOWN_MODEL, DataPlane
from service.dataplane.stream import Opened, Rejected, StreamSession

__all__ = ["UNKNOWN_MODEL", "DataPlane", "InferRequest", "Opened", "Rejected", "StreamSession"]
