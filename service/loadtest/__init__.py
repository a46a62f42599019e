"""Load generator for seqserve: `python -m service.loadtest` (closed or open loop, HDR latency, JSON report)."""

from service.loadtest.config import LoadConfig
from service.loadtest.report import Report
from service.loadtest.runner import run_load

__all__ = ["LoadConfig", "Report", "run_load"]
