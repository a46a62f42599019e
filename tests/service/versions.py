"""Model versions for rollout tests: a shipped version copied into a test repository, and a "v2" made from it by
perturbing its weights (same inputs, outputs and state layout; different answers), published atomically (written
to a hidden temporary folder, then renamed into place) the way the importer and the exporter publish."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from modelrepo import latest_versions
from tests.service.helpers import SHIPPED

MODEL = "vowels_gru"  # small and streamable: (batch, time, 12) in, one state tensor


def source_folder(name: str = MODEL) -> Path:
    return latest_versions(SHIPPED)[name].path


def write_version(folder: Path, name: str, version: int, graph: bytes, manifest: dict) -> None:  # type: ignore[type-arg]
    (folder / "model.onnx").write_bytes(graph)
    raw = {**manifest, "name": name, "version": version}
    raw["onnx"] = {**raw["onnx"], "sha256": hashlib.sha256(graph).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")


def publish(root: Path, name: str, version: int, *, scale: float = 1.0, corrupt: bool = False,
            source: Path | None = None) -> Path:
    """`root/name/version/` from a shipped version, its float weights times `scale` (1: unchanged); `corrupt`
    writes a truncated graph whose manifest hash matches (what a bad export looks like). Atomic: a poll never
    sees half of it."""
    source = source or source_folder()
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    graph = (source / "model.onnx").read_bytes()
    if scale != 1.0:
        proto = onnx.load_from_string(graph)
        for tensor in proto.graph.initializer:
            array = numpy_helper.to_array(tensor)
            if array.dtype == np.float32 and array.size > 1:
                tensor.CopyFrom(numpy_helper.from_array((array * scale).astype(np.float32), tensor.name))
        graph = proto.SerializeToString()
    if corrupt:
        graph = graph[: len(graph) // 2]
    (root / name).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root / name))
    write_version(tmp, name, version, graph, manifest)
    tmp.chmod(0o755)
    tmp.rename(root / name / str(version))
    return root / name / str(version)


def whole_run(folder: Path, x: np.ndarray, state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The whole-sequence run of one version's graph `(batch, time, features)` from `state` (by state input name)
    or its initial state; every output by name."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {manifest["input"]["name"]: x}
    for pair in manifest["state"]:
        initial = np.full((x.shape[0], *pair["shape"]), pair.get("initial", 0.0), pair["dtype"])
        feeds[pair["input"]] = initial if state is None else state[pair["input"]]
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def copy_shipped(root: Path, name: str = MODEL, version: int = 1) -> Path:
    """A shipped model, unchanged, as version `version` of `name` in a test repository."""
    return publish(root, name, version)
