"""The models benchmarked: the shipped LSTMs (`vowels_lstm`; `forecast_sunspots`, one feature, hidden 32) and the
reference LSTM of issue 9 (2 layers, hidden 256) exported at bench time with untrained weights (speed does not
depend on the weights) into a temporary model repository.
"""

from __future__ import annotations

from pathlib import Path

from modelrepo import Manifest, latest_versions

SUNSPOTS = "forecast_sunspots"
SHIPPED = ("vowels_lstm", SUNSPOTS)
REFERENCE = "bench_lstm_2x256"
REFERENCE_LAYERS, REFERENCE_HIDDEN = 2, 256


def export_reference(root: Path, like: Manifest) -> None:
    """Writes `root/bench_lstm_2x256/1/` with the training package's exporter, shaped like `like` (features,
    outputs). Imports the training package (torch) only here.
    """
    from training.config import ModelConfig
    from training.export import export_model
    from training.model import SequenceModel

    cfg = ModelConfig(cell="lstm", input_size=like.input.features, hidden_size=REFERENCE_HIDDEN,
                      layers=REFERENCE_LAYERS, output_size=like.outputs[0].size)
    export_model(SequenceModel(cfg), root, REFERENCE, 1, description="bench only: untrained 2x256 LSTM")


def prepare_repository(root: Path, models_root: Path, reference: bool, shipped: bool = True) -> list[str]:
    """A model repository at `root` with the shipped models linked in (newest version; unless `shipped` is False)
    and, if asked, the reference LSTM exported. Returns the model names in bench order.
    """
    latest = latest_versions(models_root)
    for name in SHIPPED if shipped else ():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / str(latest[name].version)).symlink_to(latest[name].path.resolve())
    if reference:
        export_reference(root, Manifest.load(latest[SHIPPED[0]].manifest_path))
    return [*(SHIPPED if shipped else ()), *((REFERENCE,) if reference else ())]
