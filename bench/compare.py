"""`python -m bench.compare`: seqserve variants side by side, interleaved, on the same load (A/B of a change).

A variant is `NAME=FLAGS` (server flags, e.g. `2t=--intra-op-threads 2 --inline-run-max-us 0`) or
`NAME@DIR=FLAGS` (the server of another source tree, e.g. a `git archive` of main unpacked in DIR). Every variant's
server is started once and stays up; each repeat runs every (model, streams, front) cell on every variant, the
variants' order rotated per repeat. Printed per cell and variant: median chunks/s (every repeat), server CPU per
chunk (from /proc), mean batch (ModelStatistics), p50. On a shared machine trust the CPU per chunk over the rate.

    python -m bench.compare --variant old@/tmp/main= --variant new= --models-only forecast_sunspots
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench import procs, serverstats
from bench.measure import measured_load
from bench.models import prepare_repository
from modelrepo import Manifest, latest_versions
from service.loadtest import LoadConfig


def _variant(text: str) -> tuple[str, Path, list[str]]:
    head, _, flags = text.partition("=")
    name, _, root = head.partition("@")
    return name, Path(root) if root else procs.ROOT, flags.split()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    p.add_argument("--variant", action="append", type=_variant, required=True, help="NAME[@DIR]=FLAGS")
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--models-only", type=lambda t: t.split(","), default=["forecast_sunspots"],
                   help="models (bench_lstm_2x256: the reference LSTM, exported here)")
    p.add_argument("--streams", type=lambda t: [int(s) for s in t.split(",")], default=[1, 64])
    p.add_argument("--fronts", type=lambda t: t.split(","), default=["native", "triton"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=2.0)
    a = p.parse_args(argv)
    cells: dict[tuple[str, int, str, str], list[tuple[float, float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="seqserve-compare-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        prepare_repository(root, a.models, reference="bench_lstm_2x256" in a.models_only)
        servers = {name: stack.enter_context(procs.real_server(root, flags, root=src))
                   for name, src, flags in a.variant}
        for repeat in range(a.repeats):
            for model in a.models_only:
                features = Manifest.load(latest_versions(root)[model].manifest_path).input.features
                for streams in a.streams:
                    for front in a.fronts:
                        names = list(servers)
                        k = repeat % len(names)
                        for name in names[k:] + names[:k]:
                            server = servers[name]
                            config = LoadConfig(target=server.target, model=model, streams=streams,
                                                duration_s=a.duration, warmup_s=0.5, features=features,
                                                progress=False, protocol=front)
                            before = serverstats.snapshot(server.target, model)
                            m = measured_load(config, server.pid)
                            view = serverstats.server_view(before, serverstats.snapshot(server.target, model))
                            sample = (m.report.throughput_chunks_per_s, m.server_us, view.mean_batch, m.report.p50_ms)
                            cells.setdefault((model, streams, front, name), []).append(sample)
                            print(f"[compare] {name:<8} {model} x{streams} {front}: {sample[0]:.0f} chunks/s, "
                                  f"{sample[1]:.0f} us/chunk, batch {sample[2]:.1f}, p50 {sample[3]:.2f} ms",
                                  file=sys.stderr, flush=True)
    print("| model | streams | front | variant | chunks/s (median; every repeat) | server CPU us/chunk | mean batch "
          "| p50 ms |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (model, streams, front, name), samples in cells.items():
        med = [statistics.median(s[i] for s in samples) for i in range(4)]
        every = "; ".join(f"{s[0]:.0f}" for s in samples)
        print(f"| {model} | {streams} | {front} | {name} | {med[0]:.0f} ({every}) | {med[1]:.0f} | {med[2]:.1f} "
              f"| {med[3]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
