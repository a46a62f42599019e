"""`python -m bench [--quick] [--no-reference] [--no-memory] [--only-memory] [--tracked]`: every path side by side.

The full run (what `make bench` does: 3 models x 1, 64, 256 streams x 6 paths, the two web paths (websocket, rest)
at 64 streams only (`--web-streams`), 2 interleaved repeats of 2 s, then the memory, VAD and store benches) takes
about 12 minutes on 2 cores; `--quick` is a smoke run (1 and 64 streams,
1 s each, one repeat, no reference LSTM, no memory check); `--repeats`, `--duration`, `--paths`, `--only-models`
size it in between; `--figure PATH` also writes the chunks/s chart there (docs/images/throughput.png for the
README); `--only-memory` runs only the idle sessions check (both transports). Results go to `bench/results/local/`
(gitignored) unless `--tracked` (into `bench/results/`) or `--out`.
The VAD bench (bench/vad.py) and the session store's write-through cost (bench/store.py) run last (`--no-vad`,
`--no-store` skip them), or alone with `--only-vad` / `--only-store`.
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

from bench import limits, reliability, render, store, targets, vad
from bench.memory import measure_idle_sessions
from bench.models import SHIPPED, prepare_repository
from bench.plan import ALL_PATHS, DEFAULT_PATHS, ECHO, ECHO_END, WEB_STREAMS, Plan, Run, drift_streams, find, run_matrix

RESULTS = Path(__file__).resolve().parent / "results"
LOCAL = RESULTS / "local"


def _streams(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(","))


def judge(plan: Plan, runs: list[Run], before: reliability.CpuSample) -> reliability.Reliability:
    after = reliability.sample()
    model, streams = plan.models[0], drift_streams(plan)
    start, end = find(runs, ECHO, model, streams), find(runs, ECHO_END, model, streams)
    return reliability.judge(start.chunks_per_s if start else 0.0, end.chunks_per_s if end else 0.0,
                             reliability.others_share(before, after), (before.load_average, after.load_average))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--models", type=Path, default=Path("models"), help="where the shipped models are")
    p.add_argument("--out", type=Path, default=None, help="results folder (default bench/results/local/)")
    p.add_argument("--tracked", action="store_true", help="write the results into bench/results/ (tracked)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 and 64 streams, 1 s each, once, no reference")
    p.add_argument("--no-reference", action="store_true", help="skip the 2x256 reference LSTM")
    p.add_argument("--no-memory", action="store_true", help="skip the 10,000 idle sessions check")
    p.add_argument("--only-memory", action="store_true", help="only the idle sessions check (both transports)")
    p.add_argument("--streams", type=_streams, default=None, help="stream counts, e.g. 1,64,256 (the default)")
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per load run")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds sent before each run's measurement")
    p.add_argument("--repeats", type=int, default=2, help="times the whole matrix runs, interleaved")
    p.add_argument("--paths", type=lambda t: tuple(t.split(",")), default=DEFAULT_PATHS,
                   help=f"paths to run, of {','.join(ALL_PATHS)} (default {','.join(DEFAULT_PATHS)})")
    p.add_argument("--web-streams", type=lambda t: None if t == "all" else _streams(t), default=WEB_STREAMS,
                   help="stream counts the websocket and rest paths run at, or `all` (default 64)")
    p.add_argument("--only-models", type=lambda t: t.split(","), default=None, help="a subset of the models")
    p.add_argument("--figure", type=Path, default=None, help="also write the chunks/s chart to this PNG")
    p.add_argument("--processes", type=int, default=1, help="client processes per load run")
    p.add_argument("--sessions", type=int, default=10_000, help="idle sessions for the memory check")
    p.add_argument("--no-vad", action="store_true", help="skip the Silero VAD bench (bench/vad.py)")
    p.add_argument("--only-vad", action="store_true", help="only the Silero VAD bench")
    p.add_argument("--no-store", action="store_true", help="skip the session store bench (bench/store.py)")
    p.add_argument("--only-store", action="store_true", help="only the session store bench")
    a = p.parse_args(argv)
    out = a.out or (RESULTS if a.tracked else LOCAL)
    if a.only_vad:
        return vad.main(a.models, out, a.duration)
    if a.only_store:
        return _store(a.models, out, a.duration)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    began, cpu = time.monotonic(), reliability.sample()
    with tempfile.TemporaryDirectory(prefix="seqserve-bench-") as tmp:
        root = Path(tmp)
        names = prepare_repository(root, a.models, reference=not (a.quick or a.no_reference or a.only_memory))
        names = [n for n in names if a.only_models is None or n in a.only_models]
        plan = Plan(root, names, streams=a.streams or ((1, 64) if a.quick else (1, 64, 256)),
                    duration_s=1.0 if a.quick else a.duration, processes=a.processes,
                    warmup_s=0.5 if a.quick else a.warmup, repeats=1 if a.quick else a.repeats, paths=a.paths,
                    web_streams=a.web_streams)
        runs, timers = ([], {}) if a.only_memory else run_matrix(plan)
        rows = limits.aggregate(runs)
        found_limits = limits.limits(rows, timers)
        memory = []
        if a.only_memory or not (a.quick or a.no_memory):
            memory = measure_idle_sessions(root, SHIPPED[0], a.sessions)
    judged = judge(plan, runs, cpu) if runs else None
    elapsed = time.monotonic() - began
    out.mkdir(parents=True, exist_ok=True)
    title = (f"seqserve bench {stamp} (chunk {plan.chunk}, {plan.duration_s:g} s per run, {plan.repeats} interleaved "
             f"repeats, CPU, {elapsed:.0f} s total)")
    data = {"timestamp": stamp, "plan": {**asdict(plan), "models_root": None}, "elapsed_s": elapsed,
            "reliability": judged.to_json() if judged else None, "rows": [r.to_json() for r in rows],
            "limits": [x.to_json() for x in found_limits], "runs": [r.to_json() for r in runs],
            "targets": [c.to_json() for c in targets.checks(rows)], "memory": [m.to_json() for m in memory]}
    (out / f"{stamp}.json").write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    text = render.markdown(rows, memory, title, judged, found_limits)
    (out / f"{stamp}.md").write_text(text, encoding="utf-8")
    if rows:
        render.chart(rows, out / f"{stamp}.png")
        if a.figure:
            a.figure.parent.mkdir(parents=True, exist_ok=True)
            render.chart(rows, a.figure)
    print(text)
    print(f"[bench] wrote {out / stamp}.{{json,md,png}}", file=sys.stderr)
    if a.quick or a.only_memory:
        return 0
    failed = 0 if a.no_vad else vad.main(a.models, out, a.duration)
    return failed or (0 if a.no_store else _store(a.models, out, a.duration))


def _store(models: Path, out: Path, duration: float) -> int:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    results = out / f"{stamp}-store.json"
    return store.main(["--models", str(models), "--duration", str(duration), "--json", str(results)])


if __name__ == "__main__":
    sys.exit(main())
