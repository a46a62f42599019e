"""The web paths in the bench matrix (issue 24): where they run, in the interleaved order, and their target line,
from given numbers (nothing is timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import targets
from bench.models import SUNSPOTS
from bench.plan import DEFAULT_PATHS, NATIVE, REST, SERVER_PATHS, WEBSOCKET, Plan, Run, applies, order
from bench.render import markdown


def test_the_web_paths_are_default_seqserve_paths_at_64_streams_only() -> None:
    assert {WEBSOCKET, REST} <= set(DEFAULT_PATHS) and {WEBSOCKET, REST} <= set(SERVER_PATHS)
    assert applies(WEBSOCKET, 64) and applies(REST, 64)
    assert not applies(WEBSOCKET, 1) and not applies(REST, 256)
    assert applies(REST, 256, None) and applies(WEBSOCKET, 1, None)  # `--web-streams all`


def test_they_are_rotated_with_native_in_every_repeat_of_their_cell() -> None:
    plan = Plan(Path("."), [SUNSPOTS], streams=(1, 64), repeats=3, paths=(NATIVE, WEBSOCKET, REST))
    cells = list(order(plan))
    assert [c for c in cells if c[2] == 1] == [(NATIVE, SUNSPOTS, 1, r) for r in range(3)]
    firsts = [next(c[0] for c in cells if c[2] == 64 and c[3] == r) for r in range(3)]
    assert firsts == [NATIVE, WEBSOCKET, REST]  # each repeat starts the cell on the next path
    assert sum(1 for c in cells if c[2] == 64) == 9
    every = Plan(Path("."), [SUNSPOTS], streams=(1, 64), repeats=1, paths=(NATIVE, WEBSOCKET), web_streams=None)
    assert [c[:3] for c in order(every)] == [(NATIVE, SUNSPOTS, 1), (WEBSOCKET, SUNSPOTS, 1),
                                            (NATIVE, SUNSPOTS, 64), (WEBSOCKET, SUNSPOTS, 64)]


def _run(path: str, chunks_per_s: float) -> Run:
    report = {"throughput_chunks_per_s": chunks_per_s, "p50_ms": 1.0, "p99_ms": 2.0, "chunk": 10, "errors": {}}
    return Run(path, SUNSPOTS, 64, report, mean_batch=30.0, server_cpu_us=100.0)


@pytest.mark.parametrize(("websocket", "holds", "margin"), [(3400.0, True, 0.0625), (3000.0, False, -0.0625)])
def test_the_websocket_target_is_within_20_percent_of_native(websocket: float, holds: bool, margin: float) -> None:
    rows = [_run(NATIVE, 4000.0), _run(WEBSOCKET, websocket), _run(REST, 500.0)]
    [check] = [c for c in targets.checks(rows) if "WebSocket" in c.text]
    assert check.holds is holds and check.margin == pytest.approx(margin)
    assert check.value == pytest.approx(websocket / 4000.0) and check.limit == 0.8
    line = check.line(True)
    assert line.startswith("- HOLDS" if holds else "- MISSED") and f"{'holds' if holds else 'misses'} by 6 %" in line
    text = markdown(rows, [], "t")
    assert f"| {SUNSPOTS} | 64 | websocket |" in text and f"| {SUNSPOTS} | 64 | rest |" in text
    assert "WebSocket / native gRPC Stream chunks/s (bound: within 20 % of native 4000)" in text


def test_no_websocket_row_no_web_target() -> None:
    assert not [c for c in targets.checks([_run(NATIVE, 4000.0), _run(REST, 500.0)]) if "WebSocket" in c.text]
