"""What every closed-loop load driver shares: its config, progress counter and tally, when to send one more
request, and how one answer is counted (only those sent after the warm-up)."""

from __future__ import annotations

import time

import numpy as np

from service.loadtest.config import LoadConfig
from service.loadtest.driver import Counter
from service.loadtest.stats import Tally


class ClosedLoop:
    def __init__(self, config: LoadConfig, progress: Counter) -> None:
        if config.features is None:
            raise ValueError("the driver needs the chunk width (features)")
        self.config = config
        self.progress = progress
        self.tally = Tally()
        self._rng = np.random.default_rng(config.seed)
        self._measure_from = 0.0  # answers to requests sent before this (the warm-up) are not tallied

    def _more(self, sent: int, deadline: float) -> bool:
        if self.config.chunks is not None and sent >= self.config.chunks:
            return False
        return self.config.duration_s is None or time.monotonic() < deadline

    def _answer(self, error: str | None, sent_at: float) -> bool:
        """Tally one answer (`error` None: a success); whether it was a success."""
        self.progress.value += 1
        if sent_at >= self._measure_from:
            if error is None:
                self.tally.record_ok(time.monotonic() - sent_at, self.config.chunk)
            else:
                self.tally.record_error(error)
        return error is None
