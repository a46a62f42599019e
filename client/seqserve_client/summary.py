"""What `stream` and `infer` print besides `--output`: one line a person reads per chunk (or sequence).

A classifier's output (kind `logits`) reads as the class at the last step with its softmax probability, by label
when the model names its classes; any other output (a regression, a probability) as the last step's values.
"""

from __future__ import annotations

import numpy as np

from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb

SHOWN = 4  # values of a regressor's last step shown, at most


def last_step(spec: pb.OutputSpec, step: np.ndarray) -> str:
    """One step's output `(size,)` in words: `speaker_3 (p 0.97)` or `forecast 12.5`."""
    values = np.asarray(step, dtype=np.float64).reshape(-1)
    if spec.kind == "logits" and values.size > 1:
        k = int(np.argmax(values))
        p = float(1.0 / np.exp(values - values[k]).sum())  # softmax at the argmax, without overflow
        label = spec.labels[k] if k < len(spec.labels) else f"class {k}"
        return f"{label} (p {p:.2f})"
    more = ", ..." if values.size > SHOWN else ""
    return f"{spec.tensor.name} " + ", ".join(f"{v:.4g}" for v in values[:SHOWN]) + more


def chunk_lines(spec: pb.OutputSpec, pieces: list[np.ndarray]) -> list[str]:
    """`chunk 1, steps 1-5: speaker_1 (p 0.91)`, one line per answered chunk `(time, size)`."""
    lines, start = [], 0
    for k, piece in enumerate(pieces, 1):
        lines.append(f"chunk {k}, steps {start + 1}-{start + len(piece)}: {last_step(spec, piece[-1])}")
        start += len(piece)
    return lines
