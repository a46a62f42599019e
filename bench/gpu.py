"""`python -m bench.gpu`: steps/s of the 2x256 reference LSTM served on one device at many streams (what
`scripts/gpu_check.sh` runs on a GPU machine), as one markdown table.

`--device cuda --streams 1,64,1024,4096` on a GPU machine; `--device cpu --streams 1,4 --duration 0.5` is the dry run.
Client processes grow with the streams (`--streams-per-process`), up to the machine's cores less two. The server
gets room for every stream (`--max-sessions`) and batches up to `--max-batch-size`. `--export DIR` only writes the
reference model repository (to carry it to a machine without torch); `--repository DIR` serves one written so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import procs, serverstats
from bench.models import REFERENCE, prepare_repository
from modelrepo import Manifest, latest_versions
from service.loadtest import LoadConfig, run_load


def client_processes(streams: int, per_process: int, cpus: int | None = None) -> int:
    """Enough client processes for `streams` at `per_process` each, leaving two cores to the server."""
    most = max(1, (cpus or os.cpu_count() or 1) - 2)
    return max(1, min(most, math.ceil(streams / per_process)))


def measure(repository: Path, a: argparse.Namespace) -> list[dict[str, object]]:
    features = Manifest.load(latest_versions(repository)[REFERENCE].manifest_path).input.features
    extra = ["--max-sessions", str(max(a.streams) + 64), "--max-batch-size", str(a.max_batch_size),
             "--intra-op-threads", "1"]
    rows: list[dict[str, object]] = []
    with procs.real_server(repository, extra, device=a.device) as server:
        for streams in a.streams:
            processes = client_processes(streams, a.streams_per_process)
            before = serverstats.snapshot(server.target, REFERENCE)
            report = run_load(LoadConfig(target=server.target, model=REFERENCE, streams=streams, chunk=a.chunk,
                                         duration_s=a.duration, warmup_s=a.warmup, processes=processes,
                                         features=features, progress=False))
            view = serverstats.server_view(before, serverstats.snapshot(server.target, REFERENCE))
            row = {"streams": streams, "processes": processes, **report.to_json(), "mean_batch": view.mean_batch,
                   "mean_model_run_ms": view.mean_model_run_ms}
            rows.append(row)
            print(f"[bench.gpu] {streams} streams: {report.throughput_steps_per_s:.0f} steps/s, p99 "
                  f"{report.p99_ms:.2f} ms, mean batch {view.mean_batch:.1f}, errors {report.errors or 'none'}",
                  file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, object]], device: str, chunk: int) -> str:
    head = ["streams", "client processes", "steps/s", "chunks/s", "p50 ms", "p99 ms", "mean batch",
            "model run ms", "errors"]
    lines = [f"{REFERENCE} on {device}, chunk {chunk}, closed loop, native Stream:", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        errors = ", ".join(f"{k}={v}" for k, v in sorted(r["errors"].items())) or "-"  # type: ignore[attr-defined]
        lines.append(f"| {r['streams']} | {r['processes']} | {r['throughput_steps_per_s']:.0f} "
                     f"| {r['throughput_chunks_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                     f"| {r['mean_batch']:.1f} | {r['mean_model_run_ms']:.2f} | {errors} |")
    return "\n".join(lines)


def _streams(text: str) -> list[int]:
    return [int(s) for s in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu", "auto"), default="cuda")
    p.add_argument("--models", type=Path, default=Path("models"), help="the shipped models (shape of the reference)")
    p.add_argument("--repository", type=Path, default=None, help="serve this repository (holding the reference)")
    p.add_argument("--export", type=Path, default=None, help="only write the reference model repository here")
    p.add_argument("--streams", type=_streams, default=[1, 64, 1024, 4096])
    p.add_argument("--streams-per-process", type=int, default=256, help="load streams per client process")
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--max-batch-size", type=int, default=4096)
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    a = p.parse_args(argv)
    if a.export is not None:
        a.export.mkdir(parents=True, exist_ok=True)
        prepare_repository(a.export, a.models, reference=True, shipped=False)
        return 0
    if a.repository is not None:
        rows = measure(a.repository, a)
    else:
        with tempfile.TemporaryDirectory(prefix="seqserve-gpu-") as tmp:
            prepare_repository(Path(tmp), a.models, reference=True, shipped=False)
            rows = measure(Path(tmp), a)
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(table(rows, a.device, a.chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
