"""The bench's outputs: a markdown table (every path side by side, the reliability verdict, the target checks) and a
PNG chart of throughput and p99 against streams."""

from __future__ import annotations

from pathlib import Path

from bench import targets
from bench.memory import NATIVE_STREAM, TRITON_SEQUENCE_ID, MemoryResult
from bench.plan import BASELINE, ECHO, ECHO_END, NATIVE, SERVER_PATHS, TRITON, TRITON_MUX, UNBATCHED, Run, find
from bench.reliability import Reliability

PATH_ORDER = (NATIVE, TRITON, TRITON_MUX, BASELINE, UNBATCHED, ECHO, ECHO_END)
TRANSPORTS = {
    NATIVE_STREAM: "one open native gRPC SeqServe/Stream per session",
    TRITON_SEQUENCE_ID: "Triton ModelInfer, unary, sequence_id + sequence_start without sequence_end; no open stream",
}


COLUMNS = ("model", "streams", "path", "chunks/s", "p50 ms", "p99 ms", "mean batch", "compute ceiling chunks/s",
           "/ baseline", "/ echo", "errors")


def _ratio(run: Run, other: Run | None) -> str:
    return f"{run.chunks_per_s / other.chunks_per_s:.2f}" if other and other.chunks_per_s else "-"


def table(runs: list[Run]) -> list[str]:
    """One line per (model, streams, path), the paths side by side; ratios against the same model and streams."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in runs:
        server = r.path in SERVER_PATHS
        errors = ", ".join(f"{k}={v}" for k, v in sorted(r.report.get("errors", {}).items())) or "-"  # type: ignore[attr-defined]
        out.append(
            f"| {r.model} | {r.streams} | {r.path} | {r.chunks_per_s:.0f} | {r.num('p50_ms'):.2f} "
            f"| {r.num('p99_ms'):.2f} | {f'{r.mean_batch:.1f}' if server else '-'} "
            f"| {f'{r.compute_chunks_per_s:.0f}' if server else '-'} "
            f"| {_ratio(r, find(runs, BASELINE, r.model, r.streams))} "
            f"| {_ratio(r, find(runs, ECHO, r.model, r.streams))} | {errors} |"
        )
    return out


def markdown(runs: list[Run], memory: list[MemoryResult], title: str, reliability: Reliability | None = None) -> str:
    lines = [f"## {title}", ""]
    if reliability is not None:
        lines += [reliability.summary(), ""]
    if runs:
        ordered = sorted(runs, key=lambda r: (r.model, r.streams, PATH_ORDER.index(r.path)))
        lines += [*table(ordered), "", *targets.lines(runs, reliability is None or reliability.reliable)]
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


def chart(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for model in dict.fromkeys(r.model for r in runs):
        for kind in PATH_ORDER[:-1]:
            mine = sorted((r for r in runs if (r.model, r.path) == (model, kind)), key=lambda r: r.streams)
            if not mine or (kind == ECHO and model != runs[0].model):
                continue
            style = "k--" if kind == ECHO else "o-"
            label = "echo (transport ceiling)" if kind == ECHO else f"{model} {kind}"
            left.plot([r.streams for r in mine], [r.chunks_per_s for r in mine], style, label=label)
            right.plot([r.streams for r in mine], [r.num("p99_ms") for r in mine], style, label=label)
    for ax, label in ((left, "chunks/s"), (right, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams (chunk 10)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
