"""`models/README.md`: a table of every shipped model and its metrics, written from the manifests."""

from __future__ import annotations

from pathlib import Path

from modelrepo import Manifest, latest_versions

CELL_NAMES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM", "jordan": "Jordan", "peephole_lstm": "peephole LSTM",
              "coupled_lstm": "coupled-gate LSTM", "peephole_coupled_lstm": "peephole coupled-gate LSTM",
              "custom": "custom"}

_HEADER = """# Shipped models

Rebuilt from scratch by `make models` (`python -m training build-all --force`; seeded, deterministic on CPU).
Each `<name>/<version>/` holds `model.onnx` (single file, native ONNX recurrent operator, or a `Scan` for the
Jordan network), `manifest.json` (the contract the server reads: tensors, state pairs, training data and
metrics, export verification, sha256) and `curves.png` (training curves). Data sources and licences:
`training/data/SOURCES.md`. Imported models (`source` in the manifest: original file, licence, what the wrapper
changed) come from `python -m modelrepo import`; `silero_vad` is Silero VAD 6.2.3 (MIT), imported by `make models`
from the pip-installed `silero-vad` wheel (`python -m modelrepo.importer.silero --force`). See docs/models.md.

| model | version | cell | layers x hidden | streamable | state | test metrics | verification (max abs diff) | size |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""


def _metrics(manifest: Manifest) -> str:
    m = manifest.training.metrics if manifest.training else {}
    if "test_accuracy" in m:
        return f"last-frame accuracy {m['test_accuracy']:.1%} (every frame {m['test_frame_accuracy']:.1%})"
    if "test_rmse" in m:
        return f"RMSE {m['test_rmse']:.2f} (naive last value {m['naive_rmse']:.2f})"
    if "bits_per_char" in m:
        return f"{m['bits_per_char']:.2f} bits per character, next-character accuracy {m['accuracy']:.1%} (its text)"
    if not m and manifest.source is not None:
        return f"imported ({manifest.source.licence or 'licence not given'})"
    return ", ".join(f"{k} {v:.4g}" for k, v in m.items())


def _verification(manifest: Manifest) -> str:
    v = manifest.verification
    if v is None:
        return "-"
    chunked = "-" if v.chunked_vs_whole is None else f"{v.chunked_vs_whole:.1e}"
    first = (f"torch/ORT {v.torch_vs_onnxruntime:.1e}" if v.torch_vs_onnxruntime is not None
             else f"original/wrapped {v.original_vs_wrapped or 0.0:.1e}")
    return f"{first}, chunked {chunked}, batched {v.batched_vs_alone:.1e}"


def catalog_markdown(root: Path) -> str:
    rows = []
    for found in latest_versions(root).values():
        m = Manifest.load(found.manifest_path)
        arch = m.architecture
        cell = f"{'bi' if arch.bidirectional else ''}{CELL_NAMES[arch.cell]}"
        state = ", ".join(f"{s.input}->{s.output} {s.shape}" for s in m.state) or "none"
        size = f"{found.model_path.stat().st_size / 1024:.0f} kB"
        shape = f"{arch.layers} x {arch.hidden_size}" if arch.layers else "-"
        rows.append(f"| `{m.name}` | {m.version} | {cell} | {shape} | "
                    f"{'yes' if m.streamable else 'no'} | {state} | {_metrics(m)} | {_verification(m)} | {size} |")
    return _HEADER + "\n".join(rows) + "\n"


def write_catalog(root: Path) -> Path:
    path = Path(root) / "README.md"
    path.write_text(catalog_markdown(root), encoding="utf-8")
    return path
