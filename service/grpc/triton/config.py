"""What the Triton protocol says about models, built from the manifest, the settings and the engine's counters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from modelrepo.manifest import MODEL_FILE, Manifest
from service.grpc.generated.inference import grpc_service_pb2 as pb
from service.grpc.generated.inference import model_config_pb2 as mc
from service.grpc.triton.convert import datatype_name
from service.settings import Settings

if TYPE_CHECKING:
    from service.engine.metrics import ModelStats
    from service.engine.registry import ModelStatus
    from service.engine.tuning import Tuning

PLATFORM, BACKEND = "onnxruntime_onnx", "onnxruntime"
VARIABLE = -1
CUDA_PROVIDER = "CUDAExecutionProvider"


def config_type(dtype: str) -> int:
    """The model-configuration type (TYPE_FP32) of a manifest dtype (float32)."""
    return mc.DataType.Value(f"TYPE_{datatype_name(dtype)}")


Tensors = list[tuple[str, str, list[int]]]


def _tensors(manifest: Manifest) -> tuple[Tensors, Tensors]:
    """(name, dtype, shape without the batch axis) of every input and every output, state outputs last."""
    inputs: Tensors = [(i.name, i.dtype, [VARIABLE, i.features]) for i in manifest.inputs]
    outputs: Tensors = [(out.name, out.dtype, [VARIABLE, out.size]) for out in manifest.outputs]
    outputs += [(pair.output, pair.dtype, list(pair.shape)) for pair in manifest.state]
    return inputs, outputs


def model_metadata(manifest: Manifest, versions: Iterable[int]) -> pb.ModelMetadataResponse:
    """Shapes include the batch axis; -1 marks the variable batch and time axes."""
    inputs, outputs = _tensors(manifest)
    meta = pb.ModelMetadataResponse(name=manifest.name, versions=[str(v) for v in versions], platform=PLATFORM)
    for name, dtype, dims in inputs:
        meta.inputs.add(name=name, datatype=datatype_name(dtype), shape=[VARIABLE, *dims])
    for name, dtype, dims in outputs:
        meta.outputs.add(name=name, datatype=datatype_name(dtype), shape=[VARIABLE, *dims])
    return meta


def model_config(manifest: Manifest, provider: str, settings: Settings, tuning: Tuning | None = None
                 ) -> mc.ModelConfig:
    """A faithful Triton configuration: dims leave out the batch axis, as Triton's do when max_batch_size > 0."""
    inputs, outputs = _tensors(manifest)
    config = mc.ModelConfig(
        name=manifest.name,
        platform=PLATFORM,
        backend=BACKEND,
        max_batch_size=settings.max_batch_size,
        default_model_filename=MODEL_FILE,
    )
    for name, dtype, dims in inputs:
        config.input.add(name=name, data_type=config_type(dtype), dims=dims)
    for name, dtype, dims in outputs:
        config.output.add(name=name, data_type=config_type(dtype), dims=dims)
    if tuning is not None:  # what the server decided from measured costs (Triton's backends take such parameters)
        config.parameters["intra_op_thread_count"].string_value = str(tuning.intra_op_threads)
        config.parameters["tuning"].string_value = tuning.describe()
    kind = mc.ModelInstanceGroup.KIND_GPU if provider == CUDA_PROVIDER else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(name=manifest.name, kind=kind, count=1)
    if manifest.streamable:
        _sequence_batching(manifest, settings, config.sequence_batching)
    else:
        config.dynamic_batching.max_queue_delay_microseconds = settings.max_queue_delay_us
    return config


def _sequence_batching(manifest: Manifest, settings: Settings, batching: mc.ModelSequenceBatching) -> None:
    """The state pairs as implicit state; sequences batched oldest-first, at most one step each per batch."""
    batching.max_sequence_idle_microseconds = round(settings.session_idle_timeout * 1_000_000)
    batching.oldest.max_candidate_sequences = settings.max_sessions
    batching.oldest.max_queue_delay_microseconds = settings.max_queue_delay_us
    batching.oldest.preserve_ordering = True
    for pair in manifest.state:  # a non-zero initial value has no Triton spelling: see the native GetModel
        state = batching.state.add(
            input_name=pair.input, output_name=pair.output, data_type=config_type(pair.dtype), dims=pair.shape
        )
        if pair.initial == 0.0:
            state.initial_state.add(name=f"{pair.input}_initial", data_type=config_type(pair.dtype),
                                    dims=pair.shape, zero_data=True)


def model_statistics(manifest: Manifest, stats: ModelStats) -> pb.ModelStatistics:
    """Triton's statistics from the engine's cumulative counters (durations in ns, counts in steps)."""
    computed = stats.inference_count
    return pb.ModelStatistics(
        name=manifest.name,
        version=str(manifest.version),
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=pb.StatisticDuration(count=stats.success_count, ns=stats.success_ns),
            fail=pb.StatisticDuration(count=stats.fail_count, ns=stats.fail_ns),
            queue=pb.StatisticDuration(count=stats.queue_count, ns=stats.queue_ns),
            compute_input=pb.StatisticDuration(count=computed, ns=stats.compute_input_ns),
            compute_infer=pb.StatisticDuration(count=computed, ns=stats.compute_infer_ns),
            compute_output=pb.StatisticDuration(count=computed, ns=stats.compute_output_ns),
        ),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=batch.batch_size,
                compute_input=pb.StatisticDuration(count=batch.count, ns=batch.compute_input_ns),
                compute_infer=pb.StatisticDuration(count=batch.count, ns=batch.compute_infer_ns),
                compute_output=pb.StatisticDuration(count=batch.count, ns=batch.compute_output_ns),
            )
            for batch in stats.batches
        ],
    )


def repository_index(statuses: Iterable[ModelStatus], ready_only: bool) -> pb.RepositoryIndexResponse:
    """Every model version found, served or not, with the reason when it is not."""
    index = pb.RepositoryIndexResponse()
    for status in sorted(statuses, key=lambda s: (s.name, s.version)):
        if status.ready or not ready_only:
            index.models.add(name=status.name, version=str(status.version), state=status.state,
                             reason=status.reason)
    return index
