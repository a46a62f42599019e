"""The VAD bench: Silero VAD frames/s through the real server at 1, 64 and 256 streams, one 512-sample frame
(32 ms of 16 kHz audio) per chunk, against Silero's own single-stream loop (its `OnnxWrapper`, one frame per call).

`python -m bench --only-vad` runs only this; `make bench` runs it after the main matrix (`--no-vad` skips it).
Writes `bench/results/<stamp>-vad.{json,md}`. Needs the test extras (silero-vad, torch) for the reference loop.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench import procs, serverstats
from modelrepo import latest_versions
from service.loadtest import LoadConfig, run_load

MODEL, FRAME, RATE = "silero_vad", 512, 16000
STREAMS = (1, 64, 256)


@dataclass(frozen=True)
class VadRow:
    streams: int
    frames_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    over_reference: float  # frames/s over the single-stream reference loop's
    realtime_streams: float  # how many live 16 kHz streams that rate keeps up with (31.25 frames/s each)


def reference_frames_per_s(seconds: float, seed: int = 0) -> float:
    """Silero's own loop over the original graph from the wheel: one stream, one frame per call, for `seconds`."""
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    from modelrepo.importer.silero import model_file

    torch.set_num_threads(1)
    wrapper = OnnxWrapper(str(model_file()), force_onnx_cpu=True)
    frames = torch.from_numpy(np.random.default_rng(seed).standard_normal((256, FRAME)).astype(np.float32) * 0.1)
    for frame in frames[:16]:  # warm-up
        wrapper(frame, RATE)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        wrapper(frames[done % len(frames)], RATE)
        done += 1
    return done / (time.perf_counter() - began)


def run_vad(models_root: Path, duration_s: float, warmup_s: float, streams: tuple[int, ...] = STREAMS
            ) -> tuple[float, list[VadRow]]:
    reference = reference_frames_per_s(duration_s)
    rows = []
    with tempfile.TemporaryDirectory(prefix="seqserve-bench-vad-") as tmp:
        found = latest_versions(models_root)[MODEL]
        (Path(tmp) / MODEL).mkdir()
        (Path(tmp) / MODEL / str(found.version)).symlink_to(found.path.resolve())
        with procs.real_server(Path(tmp), ["--intra-op-threads", "1"]) as server:
            for n in streams:
                before = serverstats.snapshot(server.target, MODEL)
                report = run_load(LoadConfig(target=server.target, model=MODEL, streams=n, chunk=1,
                                             duration_s=duration_s, warmup_s=warmup_s, features=FRAME,
                                             progress=False))
                view = serverstats.server_view(before, serverstats.snapshot(server.target, MODEL))
                rate = report.throughput_steps_per_s
                rows.append(VadRow(n, rate, report.p50_ms, report.p99_ms, view.mean_batch, rate / reference,
                                   rate / (RATE / FRAME)))
                print(f"[bench] vad x{n}: {rate:.0f} frames/s, mean batch {view.mean_batch:.1f}, errors "
                      f"{report.errors or 'none'}", file=sys.stderr, flush=True)
    return reference, rows


def markdown(reference: float, rows: list[VadRow], title: str) -> str:
    lines = [f"## {title}", "",
             f"Reference: Silero's own loop (OnnxWrapper, one stream, one frame per call): {reference:.0f} frames/s "
             f"({reference / (RATE / FRAME):.0f}x real time).", "",
             "| streams | frames/s | p50 ms | p99 ms | mean batch | vs reference | live 16 kHz streams kept up with |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.streams} | {r.frames_per_s:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.mean_batch:.1f} | "
              f"{r.over_reference:.2f}x | {r.realtime_streams:.0f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(models_root: Path, out: Path, duration_s: float = 4.0, warmup_s: float = 1.0) -> int:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    reference, rows = run_vad(models_root, duration_s, warmup_s)
    title = f"seqserve VAD bench {stamp} ({MODEL}, 1 frame per chunk, {duration_s:g} s per run, CPU)"
    out.mkdir(parents=True, exist_ok=True)
    data = {"timestamp": stamp, "reference_frames_per_s": reference, "rows": [asdict(r) for r in rows]}
    (out / f"{stamp}-vad.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    table = markdown(reference, rows, title)
    (out / f"{stamp}-vad.md").write_text(table, encoding="utf-8")
    print(table)
    return 0
