"""The models benchmarked: the shipped LSTM and GRU, and a larger LSTM (3 layers, hidden 512) exported at bench
time with untrained weights (speed does not depend on the weights) into a temporary model repository.
"""

from __future__ import annotations

from pathlib import Path

from modelrepo import Manifest, latest_versions

SHIPPED = ("vowels_lstm", "vowels_gru")
LARGE = "bench_lstm_3x512"


def export_large(root: Path, like: Manifest) -> None:
    """Writes `root/bench_lstm_3x512/1/` with the training package's exporter, shaped like `like` (features,
    outputs). Imports the training package (torch) only here.
    """
    from training.config import ModelConfig
    from training.export import export_model
    from training.model import SequenceModel

    cfg = ModelConfig(cell="lstm", input_size=like.input.features, hidden_size=512, layers=3,
                      output_size=like.outputs[0].size)
    export_model(SequenceModel(cfg), root, LARGE, 1, description="bench only: untrained 3x512 LSTM")


def prepare_repository(root: Path, models_root: Path, large: bool) -> list[str]:
    """A model repository at `root` with the shipped models linked in (newest version) and, if asked, the large
    one exported. Returns the model names in bench order.
    """
    latest = latest_versions(models_root)
    for name in SHIPPED:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / str(latest[name].version)).symlink_to(latest[name].path.resolve())
    if not large:
        return list(SHIPPED)
    export_large(root, Manifest.load(latest[SHIPPED[0]].manifest_path))
    return [*SHIPPED, LARGE]
