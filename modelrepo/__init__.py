"""The model repository contract shared by `training` (writer) and `service` (reader).

Nothing here imports torch or onnxruntime: both sides import it.
"""

from modelrepo.layout import ModelVersionDir, latest_versions, scan_repository
from modelrepo.manifest import (
    Architecture,
    Manifest,
    ManifestError,
    OnnxInfo,
    OutputSpec,
    SequenceInput,
    StatePair,
    TrainingRecord,
    Verification,
)

__all__ = [
    "Architecture",
    "Manifest",
    "ManifestError",
    "ModelVersionDir",
    "OnnxInfo",
    "OutputSpec",
    "SequenceInput",
    "StatePair",
    "TrainingRecord",
    "Verification",
    "latest_versions",
    "scan_repository",
]
