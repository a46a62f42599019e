"""The bench's outputs: a markdown table (every path side by side, medians of the repeats, CPU per chunk, the share
of the physical limit), the limits, the reliability verdict, the target checks, and a PNG chart of throughput and
p99 against streams."""

from __future__ import annotations

from pathlib import Path

from bench import targets
from bench.limits import Limit
from bench.memory import NATIVE_STREAM, TRITON_SEQUENCE_ID, MemoryResult
from bench.plan import ALL_PATHS, BATCHED, ECHO, ECHO_END, SERVER_PATHS, Run, find
from bench.reliability import Reliability

PATH_ORDER = (*ALL_PATHS, ECHO_END)
TRANSPORTS = {
    NATIVE_STREAM: "one open native gRPC SeqServe/Stream per session",
    TRITON_SEQUENCE_ID: "Triton ModelInfer, unary, sequence_id + sequence_start without sequence_end; no open stream",
}


COLUMNS = ("model", "streams", "path", "chunks/s (median; every repeat)", "p50 ms", "p99 ms", "server CPU us/chunk",
           "client CPU us/chunk", "mean batch", "model CPU us/chunk", "/ batched", "/ limit", "errors")


def _ratio(value: float, other: float) -> str:
    return f"{value / other:.2f}" if other else "-"


def table(rows: list[Run]) -> list[str]:
    """One line per (model, streams, path), the paths side by side; ratios against the same model and streams."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows:
        server = r.path in SERVER_PATHS
        errors = ", ".join(f"{k}={v}" for k, v in sorted(r.report.get("errors", {}).items())) or "-"  # type: ignore[attr-defined]
        batched = find(rows, BATCHED, r.model, r.streams)
        every = "; ".join(f"{s:.0f}" for s in r.samples)
        out.append(
            f"| {r.model} | {r.streams} | {r.path} | {r.chunks_per_s:.0f} ({every}) | {r.num('p50_ms'):.2f} "
            f"| {r.num('p99_ms'):.2f} | {r.server_cpu_us:.0f} | {r.client_cpu_us:.0f} "
            f"| {f'{r.mean_batch:.1f}' if server else '-'} | {f'{r.model_cpu_us:.0f}' if server else '-'} "
            f"| {_ratio(r.chunks_per_s, batched.chunks_per_s if batched else 0.0)} "
            f"| {_ratio(r.chunks_per_s, r.limit_chunks_per_s)} | {errors} |"
        )
    return out


def limit_table(limits: list[Limit]) -> list[str]:
    if not limits:
        return []
    out = ["Physical limit = cores / (client + echo server + model CPU per chunk), each measured in this run:", "",
           "| model | streams | client us/chunk | echo server us/chunk | model us/chunk (batch) | cores "
           "| limit chunks/s |",
           "|" + " --- |" * 7]
    out += [f"| {x.model} | {x.streams} | {x.client_us:.0f} | {x.echo_us:.0f} | {x.compute_us:.1f} ({x.batch}) "
            f"| {x.cores} | {x.chunks_per_s:.0f} |" for x in limits]
    return [*out, ""]


def markdown(rows: list[Run], memory: list[MemoryResult], title: str, reliability: Reliability | None = None,
             limits: list[Limit] | None = None) -> str:
    lines = [f"## {title}", ""]
    if reliability is not None:
        lines += [reliability.summary(), ""]
    if rows:
        ordered = sorted(rows, key=lambda r: (r.model, r.streams, PATH_ORDER.index(r.path)))
        lines += [*table(ordered), "", *limit_table(limits or []),
                  *targets.lines(rows, reliability is None or reliability.reliable)]
    lines += [*memory_targets(memory), ""]
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


def chart(rows: list[Run], path: Path) -> None:
    """chunks/s and p99 against streams, one panel pair per model, every path; the limit dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(len(models), 2, figsize=(12, 4 * len(models)), squeeze=False)
    for (left, right), model in zip(axes, models, strict=True):
        for kind in ALL_PATHS:
            mine = sorted((r for r in rows if (r.model, r.path) == (model, kind)), key=lambda r: r.streams)
            if not mine:
                continue
            style = "k:" if kind == ECHO else "o-"
            label = "echo (transport alone)" if kind == ECHO else kind
            left.plot([r.streams for r in mine], [r.chunks_per_s for r in mine], style, label=label)
            right.plot([r.streams for r in mine], [r.num("p99_ms") for r in mine], style, label=label)
        cells = sorted({(r.streams, r.limit_chunks_per_s) for r in rows if r.model == model and r.limit_chunks_per_s})
        if cells:
            left.plot([s for s, _ in cells], [x for _, x in cells], "r--", label="physical limit")
        left.set_title(f"{model}: chunks/s")
        right.set_title(f"{model}: p99 latency (ms)")
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent streams (chunk 10, closed loop)")
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
