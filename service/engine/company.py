"""When a batch waits for company: the sessions the batcher expects back, and how long they may take.

After a batch, its sessions are *expected*: a streaming client sends its next chunk once it has the answer. The
batcher waits for expected sessions, never for anyone else, so an idle model runs a lone step at once:

- it waits until every expected session is back, the batch is full, or the patience is used up;
- patience: `delay` after the oldest queued step, extended while steps keep arriving (each arrival gives `delay`
  more from itself) but never beyond `EXTEND` delays after the oldest step. Many sequences multiplexed on one
  stream (Triton `ModelStreamInfer`) come back one by one as the single stream reads them; the extension lets
  them batch the way separate streams do, where every answer's next chunk arrives at nearly the same moment;
- a session stops being expected once it has been away for longer than twice its typical turnaround (a moving
  average of served -> next step, measured here) or `EXTEND` delays, whichever is longer: it went quiet.

Times are `time.perf_counter_ns()` values; everything runs on the event loop thread.
"""

from __future__ import annotations

EXTEND = 10  # the longest wait, in queue delays after the oldest queued step; also the shortest horizon


class Company:
    def __init__(self, delay_ns: int) -> None:
        self.delay_ns = delay_ns
        self._expected: dict[int, int] = {}  # owner id -> when served; insertion order = oldest first
        self._turnaround_ns = 0.0  # moving average of served -> next step
        self._last_arrival = 0

    def __len__(self) -> int:
        return len(self._expected)

    def served(self, owner: int, now: int) -> None:
        """`owner` got its answer at `now`: expect its next step."""
        self._expected.pop(owner, None)  # re-inserted last: the dict stays oldest first
        self._expected[owner] = now

    def arrived(self, owner: int | None, now: int) -> None:
        """A step arrived (of `owner`, or a stateless one)."""
        self._last_arrival = now
        if owner is None:
            return
        served = self._expected.pop(owner, None)
        if served is not None:
            self._turnaround_ns = 0.9 * self._turnaround_ns + 0.1 * (now - served) if self._turnaround_ns else float(
                now - served
            )

    def forget(self, owner: int) -> bool:
        """A closed session sends nothing more; whether it was expected."""
        return self._expected.pop(owner, None) is not None

    def deadline(self, oldest: int, now: int) -> int | None:
        """Until when a batch whose oldest step arrived at `oldest` may wait; None: run it now (nobody expected)."""
        self._drop_quiet(now)
        if not self._expected:
            return None
        patience = max(oldest, self._last_arrival) + self.delay_ns
        return min(patience, oldest + EXTEND * self.delay_ns)

    @property
    def horizon_ns(self) -> float:
        return max(EXTEND * self.delay_ns, 2 * self._turnaround_ns)

    def _drop_quiet(self, now: int) -> None:
        cutoff = now - self.horizon_ns
        expected = self._expected
        while expected:
            owner, served = next(iter(expected.items()))
            if served >= cutoff:
                return
            del expected[owner]
