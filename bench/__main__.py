"""`python -m bench [--quick] [--no-large] [--no-memory] [--only-memory]`: writes `bench/results/<stamp>.{json,md,png}`.

The full run (what `make bench` does) takes about 3 to 5 minutes on 2 cores; `--quick` is a smoke run;
`--only-memory` runs only the idle sessions check (both transports) and writes no chart; the VAD bench
(bench/vad.py) runs last (`--no-vad` skips it), or alone with `--only-vad`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from bench import render, vad
from bench.memory import measure_idle_sessions
from bench.models import SHIPPED, prepare_repository
from bench.plan import Plan, run_matrix

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"), help="where the shipped models are")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="smoke run: 1 and 8 streams, 1 s each, no large model")
    p.add_argument("--no-large", action="store_true", help="skip the 3x512 LSTM")
    p.add_argument("--no-memory", action="store_true", help="skip the 10,000 idle sessions check")
    p.add_argument("--only-memory", action="store_true", help="only the idle sessions check (both transports)")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per load run")
    p.add_argument("--processes", type=int, default=1, help="client processes per load run")
    p.add_argument("--sessions", type=int, default=10_000, help="idle sessions for the memory check")
    p.add_argument("--no-vad", action="store_true", help="skip the Silero VAD bench (bench/vad.py)")
    p.add_argument("--only-vad", action="store_true", help="only the Silero VAD bench")
    a = p.parse_args(argv)
    if a.only_vad:
        return vad.main(a.models, a.out, a.duration)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seqserve-bench-") as tmp:
        root = Path(tmp)
        names = prepare_repository(root, a.models, large=not (a.quick or a.no_large or a.only_memory))
        plan = Plan(root, names, duration_s=1.0 if a.quick else a.duration, processes=a.processes,
                    streams=(1, 8) if a.quick else (1, 8, 64, 256), warmup_s=0.5 if a.quick else 1.0)
        rows = [] if a.only_memory else run_matrix(plan)
        memory = []
        if a.only_memory or not (a.quick or a.no_memory):
            memory = measure_idle_sessions(root, SHIPPED[0], a.sessions)
    elapsed = time.monotonic() - began
    a.out.mkdir(parents=True, exist_ok=True)
    title = f"seqserve bench {stamp} (chunk {plan.chunk}, {plan.duration_s:g} s per run, CPU, {elapsed:.0f} s total)"
    data = {"timestamp": stamp, "plan": {**asdict(plan), "models_root": None}, "elapsed_s": elapsed,
            "rows": [r.to_json() for r in rows], "memory": [m.to_json() for m in memory]}
    (a.out / f"{stamp}.json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    table = render.markdown(rows, memory, title)
    (a.out / f"{stamp}.md").write_text(table, encoding="utf-8")
    if rows:
        render.chart(rows, a.out / f"{stamp}.png")
    print(table)
    print(f"[bench] wrote {a.out / stamp}.{{json,md,png}}", file=sys.stderr)
    return 0 if a.quick or a.no_vad or a.only_memory else vad.main(a.models, a.out, a.duration)


if __name__ == "__main__":
    sys.exit(main())
