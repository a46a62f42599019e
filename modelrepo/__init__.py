"""The model repository contract shared by `training` (writer) and `service` (reader).

Nothing here imports torch or onnxruntime: both sides import it.
"""

from modelrepo.layout import ModelVersionDir, latest_versions, scan_repository
from modelrepo.manifest import (
    Architecture,
    Frame,
    Manifest,
    ManifestError,
    OnnxInfo,
    OutputSpec,
    SequenceInput,
    Source,
    StatePair,
    TrainingRecord,
    Verification,
)

__all__ = [
    "Architecture",
    "Frame",
    "Manifest",
    "ManifestError",
    "ModelVersionDir",
    "OnnxInfo",
    "OutputSpec",
    "SequenceInput",
    "Source",
    "StatePair",
    "TrainingRecord",
    "Verification",
    "latest_versions",
    "scan_repository",
]
