"""`scripts/soak.py` (`make soak`): a short real run ends with every session gone and reports its slopes; the slope
is fitted after the warm-up only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import soak  # noqa: E402


def test_the_slope_leaves_the_warm_up_out() -> None:
    samples = [(t, 100.0 if t < 60 else 100.0 + t / 600) for t in range(0, 600, 10)]  # a jump, then 1 MiB/10 min
    assert soak.slope_mib_per_10min(samples, warmup=60) == pytest.approx(1.0)
    assert soak.slope_mib_per_10min(samples, warmup=0) > 1.0


def test_metric_sum_adds_the_labelled_samples_of_one_family() -> None:
    text = ('seqserve_active_sessions{model="a"} 2.0\nseqserve_active_sessions{model="b"} 3.0\n'
            'seqserve_malloc_bytes{kind="in_use"} 1048576.0\nseqserve_malloc_bytes{kind="free"} 7.0\n')
    assert soak.metric_sum(text, "seqserve_active_sessions{") == 5.0
    assert soak.malloc_mib(text, "in_use") == 1.0


def test_a_mismatch_says_whether_a_chunk_was_lost_or_applied_twice() -> None:
    expected = {k: np.full(3, float(k)) for k in range(4)}  # the k-th answer of a session: k chunks applied before
    assert soak.kind_of_mismatch(expected, 2, expected[1]) == 0  # lost: one fewer applied
    assert soak.kind_of_mismatch(expected, 2, expected[3]) == 1  # duplicated: one more applied
    assert soak.kind_of_mismatch(expected, 2, np.full(3, 9.0)) == 2
    assert soak.kind_of_mismatch(expected, 3, np.full(3, 4.0)) == 2  # no 4th answer seen yet: neither


def test_a_short_soak_with_a_killed_worker_ends_with_no_sessions(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, str(SCRIPTS / "soak.py"), "--minutes", "0.2", "--streams", "8",
                           "--workers", "2", "--kill-every", "4", "--sample", "2", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["sessions_at_end"] == 0
    assert report["workers_killed"] >= 1
    assert report["requests_served"] > 0
    assert len(report["malloc_in_use_samples"]) == report["samples"]
    assert report["lost"] == report["duplicated"] == report["mismatches"] == 0
    assert report["processes_at_end"] == 0  # one server process: no workers
    assert len(report["parent_rss_samples"]) == report["samples"]


def test_a_short_recycling_soak_loses_nothing_and_reports_per_process(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, str(SCRIPTS / "soak.py"), "--minutes", "0.2", "--streams", "8",
                           "--workers", "2", "--kill-every", "0", "--sample", "1", "--server-workers", "2",
                           "--recycle-after", "300", "--json", str(out)],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["sessions_at_end"] == 0
    assert report["lost"] == report["duplicated"] == report["mismatches"] == 0
    assert report["server_processes_seen"] >= 3  # at least one replacement
    assert report["most_processes"] >= 2
    steady = {t for t, _ in report["steady_rss_samples"]}
    assert steady <= {t for t, _ in report["rss_samples"]}
    for pid, worker in report["worker_samples"].items():
        assert [a for a, _ in worker["age_mib"]] == sorted(a for a, _ in worker["age_mib"]), pid
