"""`scripts/soak.py` (`make soak`): a short real run ends with every session gone and reports its slopes; the slope
is fitted after the warm-up only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
