"""The server's own view of a run, from Triton's `ModelStatistics` RPC: the batch sizes it formed (exact counts per
size), the mean model run and the mean queue wait. Statistics are cumulative, so a run is the difference of two
snapshots; every front (native or Triton) runs through the same batcher and counts there.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from service.grpc.generated.inference import grpc_service_pb2 as tpb

STATISTICS_METHOD = "/inference.GRPCInferenceService/ModelStatistics"
CONFIG_METHOD = "/inference.GRPCInferenceService/ModelConfig"


@dataclass(frozen=True)
class Snapshot:
    batches: dict[int, tuple[int, int]]  # batch size -> (model runs, cumulative compute_infer ns)
    queue: tuple[int, int]  # (count, cumulative ns)


@dataclass(frozen=True)
class ServerView:
    """What the server saw during one run of one model."""

    batch_sizes: dict[int, int]  # size -> model runs
    mean_batch: float
    mean_model_run_ms: float
    mean_queue_wait_ms: float


def snapshot(target: str, model: str) -> Snapshot:
    request = tpb.ModelStatisticsRequest(name=model).SerializeToString()
    with grpc.insecure_channel(target) as channel:
        reply = tpb.ModelStatisticsResponse.FromString(channel.unary_unary(STATISTICS_METHOD)(request, timeout=30))
    stats = reply.model_stats[0]
    batches = {b.batch_size: (b.compute_infer.count, b.compute_infer.ns) for b in stats.batch_stats}
    queue = stats.inference_stats.queue
    return Snapshot(batches, (queue.count, queue.ns))


def server_view(before: Snapshot, after: Snapshot) -> ServerView:
    runs: dict[int, int] = {}
    infer_ns = 0
    for size, (count, ns) in after.batches.items():
        old_count, old_ns = before.batches.get(size, (0, 0))
        if count > old_count:
            runs[size] = count - old_count
            infer_ns += ns - old_ns
    executions = sum(runs.values())
    queued = after.queue[0] - before.queue[0]
    return ServerView(
        batch_sizes=runs,
        mean_batch=sum(size * n for size, n in runs.items()) / executions if executions else 0.0,
        mean_model_run_ms=infer_ns / executions / 1e6 if executions else 0.0,
        mean_queue_wait_ms=(after.queue[1] - before.queue[1]) / queued / 1e6 if queued else 0.0,
    )


def representative(batch_sizes: dict[int, int]) -> dict[int, int]:
    """The sizes grouped by powers of two, each group at its run-weighted mean size (at most ~12 sizes to time)."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for size, runs in batch_sizes.items():
        groups.setdefault(size.bit_length(), []).append((size, runs))
    out: dict[int, int] = {}
    for members in groups.values():
        runs = sum(n for _, n in members)
        size = round(sum(s * n for s, n in members) / runs)
        out[size] = out.get(size, 0) + runs
    return out


def intra_op_threads(target: str, model: str) -> int:
    """The intra-op thread count the server chose for `model` (its ModelConfig parameter), 1 if it says none."""
    request = tpb.ModelConfigRequest(name=model).SerializeToString()
    with grpc.insecure_channel(target) as channel:
        reply = tpb.ModelConfigResponse.FromString(channel.unary_unary(CONFIG_METHOD)(request, timeout=30))
    value = reply.config.parameters["intra_op_thread_count"].string_value
    return int(value) if value.isdigit() else 1
