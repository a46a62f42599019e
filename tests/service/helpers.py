"""Engine test helpers: CPU settings over the shipped models and direct onnxruntime references (no fixtures)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelrepo import Manifest, latest_versions
from service.settings import Settings

SHIPPED = Path(__file__).resolve().parents[2] / "models"
MANIFESTS = {name: Manifest.load(d.manifest_path) for name, d in latest_versions(SHIPPED).items()}
STREAMABLE = sorted(name for name, m in MANIFESTS.items() if m.streamable)
WHOLE_ONLY = sorted(name for name, m in MANIFESTS.items() if not m.streamable)


def cpu_settings(models: Path, **overrides: object) -> Settings:
    return Settings(models=models, device="cpu", intra_op_threads=1, **overrides)  # type: ignore[arg-type]


def sequence(manifest: Manifest, batch: int, steps: int, seed: int = 0) -> np.ndarray:
    """Random input `(batch, steps, features)` of the model's dtype (token ids for a token model)."""
    return random_input(manifest, np.random.default_rng(seed), (batch, steps))


def random_input(manifest: Manifest, rng: np.random.Generator, lead: tuple[int, ...]) -> np.ndarray:
    """Random `(*lead, features)` of the model's input dtype: normal values, or token ids below its vocabulary."""
    spec = manifest.input
    if spec.vocab_size is not None:
        return rng.integers(0, spec.vocab_size, (*lead, spec.features)).astype(spec.dtype)
    return rng.standard_normal((*lead, spec.features)).astype(spec.dtype)


@functools.cache
def _reference_session(name: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    path = latest_versions(SHIPPED)[name].model_path
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def reference(name: str, x: np.ndarray, state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One direct onnxruntime run of the shipped graph over `x` (batch, time, features); every output by name.

    The parity oracle of every service test (engine and gRPC fronts alike)."""
    manifest = MANIFESTS[name]
    session = _reference_session(name)
    feeds = {manifest.input.name: x}
    for p in manifest.state:
        feeds[p.input] = np.full((x.shape[0], *p.shape), p.initial, p.dtype) if state is None else state[p.input]
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))
