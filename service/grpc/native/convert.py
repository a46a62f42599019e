"""Model descriptions in the native API's messages (`ModelInfo`). Tensors go through the one codec
(`seqserve_client.codec`: dtypes, bytes <-> numpy, shape checks), which the SDK shares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from modelrepo.manifest import Manifest
from seqserve_client.codec import BY_NAME
from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

if TYPE_CHECKING:
    from service.engine.registry import ModelStatus

DYNAMIC = -1


def _data_type(dtype: str) -> pb.DataType:
    """The native enum of a manifest dtype ("float32")."""
    return BY_NAME[dtype].native  # type: ignore[return-value]


def manifest_to_info(manifest: Manifest, info: pb.ModelInfo) -> None:
    """Fill the tensor description of a `ModelInfo` from a manifest."""
    info.streamable = manifest.streamable
    info.description = manifest.description
    info.cell = manifest.architecture.cell
    first, *extra = (pb.TensorSpec(name=i.name, dtype=_data_type(i.dtype), shape=[DYNAMIC, DYNAMIC, i.features],
                                   vocab_size=i.vocab_size or 0) for i in manifest.inputs)
    info.input.CopyFrom(first)
    info.extra_inputs.extend(extra)
    for out in manifest.outputs:
        spec = pb.TensorSpec(name=out.name, dtype=_data_type(out.dtype), shape=[DYNAMIC, DYNAMIC, out.size])
        info.outputs.add(tensor=spec, kind=out.kind, description=out.description, labels=out.labels or [])
    for pair in manifest.state:
        info.state.add(input=pair.input, output=pair.output, dtype=_data_type(pair.dtype), shape=pair.shape,
                       initial=pair.initial)


def model_infos(statuses: Iterable[ModelStatus]) -> list[pb.ModelInfo]:
    """One `ModelInfo` per model version found, each listing every version found under its name."""
    rows = sorted(statuses, key=lambda s: (s.name, s.version))
    versions: dict[str, list[int]] = {}
    for status in rows:
        versions.setdefault(status.name, []).append(status.version)
    infos = []
    for status in rows:
        info = pb.ModelInfo(name=status.name, version=status.version, versions=versions[status.name],
                            ready=status.ready, reason=status.reason, provider=status.provider or "")
        if status.manifest is not None:
            manifest_to_info(status.manifest, info)
        infos.append(info)
    return infos
