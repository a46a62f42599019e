"""The bench's outputs: a markdown table (with the target checks) and a PNG chart of throughput and p99 vs streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.memory import NATIVE_STREAM, TRITON_SEQUENCE_ID, MemoryResult
from bench.plan import Row

TARGET_MODEL, TARGET_STREAMS = "vowels_lstm", 64
TRANSPORTS = {
    NATIVE_STREAM: "one open native gRPC SeqServe/Stream per session",
    TRITON_SEQUENCE_ID: "Triton ModelInfer, unary, sequence_id + sequence_start without sequence_end; no open stream",
}


def _num(d: dict[str, Any], key: str) -> float:
    return float(d.get(key, 0.0))


def markdown(rows: list[Row], memory: list[MemoryResult], title: str) -> str:
    head = ("| model | streams | server chunks/s | p50 ms | p99 ms | compute ceiling chunks/s | mean batch "
            "| echo chunks/s | echo p99 ms | unbatched chunks/s | server/compute | server/transport "
            "| batching speedup |")
    lines = [f"## {title}", "", head, "|" + " --- |" * 13] if rows else [f"## {title}"]
    for r in rows:
        ratio = r.ratios()
        lines.append(
            f"| {r.model} | {r.streams} | {_num(r.server, 'throughput_chunks_per_s'):.0f} "
            f"| {_num(r.server, 'p50_ms'):.2f} | {_num(r.server, 'p99_ms'):.2f} | {r.compute_chunks_per_s:.0f} "
            f"| {r.mean_batch:.1f} | {_num(r.echo, 'throughput_chunks_per_s'):.0f} | {_num(r.echo, 'p99_ms'):.2f} "
            f"| {_num(r.unbatched, 'throughput_chunks_per_s'):.0f} | {ratio['server_over_compute']:.2f} "
            f"| {ratio['server_over_transport']:.2f} | {ratio['batching_speedup']:.2f} |"
        )
    lines += ["", *targets(rows), *memory_targets(memory), ""]
    return "\n".join(lines)


def _verdict(text: str, ok: bool) -> str:
    return f"- {'HOLDS' if ok else 'MISSED'}: {text}"


def memory_targets(memory: list[MemoryResult]) -> list[str]:
    """The memory target once per transport that holds the idle sessions open."""
    if not memory:
        return []
    out = [f"Memory target ({memory[0].model}, RSS growth per open idle session <= state bytes + 2 KiB):", ""]
    for m in memory:
        out.append(_verdict(f"{m.transport} ({TRANSPORTS.get(m.transport, m.transport)}), {m.sessions} sessions: "
                            f"{m.bytes_per_session:.0f} B vs state {m.state_bytes} B + 2 KiB = {m.target_bytes} B",
                            m.holds))
    return [*out, ""]


def targets(rows: list[Row]) -> list[str]:
    """The issue's throughput and latency targets for the shipped LSTM at 64 streams, chunk 10."""
    row = next((r for r in rows if (r.model, r.streams) == (TARGET_MODEL, TARGET_STREAMS)), None)
    if row is None:
        return []
    ratio = row.ratios()
    p99, echo_p99 = _num(row.server, "p99_ms"), _num(row.echo, "p99_ms")
    bound = 2 * echo_p99 + row.batched_run_ms
    checks = [
        (f"batching speedup >= 2x: {ratio['batching_speedup']:.2f}x", ratio["batching_speedup"] >= 2.0),
        (f"server >= 60% of transport ceiling: {100 * ratio['server_over_transport']:.0f}%",
         ratio["server_over_transport"] >= 0.6),
        (f"p99 <= 2 x echo p99 + one batched run: {p99:.2f} ms vs {bound:.2f} ms "
         f"(2 x {echo_p99:.2f} + {row.batched_run_ms:.2f})", p99 <= bound),
    ]
    out = [f"Targets ({TARGET_MODEL}, {TARGET_STREAMS} streams, chunk {row.chunk}):", ""]
    return [*out, *(_verdict(text, ok) for text, ok in checks), ""]


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        streams = [r.streams for r in mine]
        left.plot(streams, [_num(r.server, "throughput_chunks_per_s") for r in mine], "o-", label=f"{model} server")
        left.plot(streams, [_num(r.unbatched, "throughput_chunks_per_s") for r in mine], "x:",
                  label=f"{model} unbatched")
        right.plot(streams, [_num(r.server, "p99_ms") for r in mine], "o-", label=f"{model} server")
    echo = [r for r in rows if r.model == rows[0].model]
    left.plot([r.streams for r in echo], [_num(r.echo, "throughput_chunks_per_s") for r in echo], "k--",
              label="echo (transport ceiling)")
    right.plot([r.streams for r in echo], [_num(r.echo, "p99_ms") for r in echo], "k--", label="echo")
    for ax, label in ((left, "chunks/s"), (right, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams (chunk 10)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    left.set_yscale("log")
    right.set_yscale("log")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
