"""Checks an exported graph against the torch model before it is written: the numbers go into the manifest.

1. torch vs onnxruntime on a random batch with random state;
2. chunked vs whole: random chunk sizes (the first is 1) with carried state equal one run over the sequence;
3. batched vs alone: rows with different state batched together equal each row run alone.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from modelrepo import Verification
from training.errors import ExportError
from training.model import SequenceModel

TOLERANCE = 1e-4


class OrtModel:
    """An onnxruntime session over the exported bytes, called with positional state like the torch model."""

    def __init__(self, onnx_bytes: bytes, state_inputs: list[str]) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        self.state_inputs = state_inputs

    def __call__(self, x: np.ndarray, state: list[np.ndarray]) -> list[np.ndarray]:
        feeds = {"input": x, **dict(zip(self.state_inputs, state, strict=True))}
        return list(self.session.run(None, feeds))


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def _inputs(model: SequenceModel, rng: np.random.Generator, batch: int, steps: int) -> tuple[np.ndarray, list]:
    mean, std = model.mean.numpy(), model.std.numpy()
    if model.cfg.vocab_size:  # token ids (B, T, 1)
        x = rng.integers(0, model.cfg.vocab_size, (batch, steps, 1)).astype(np.int64)
    else:
        x = (rng.standard_normal((batch, steps, model.cfg.input_size)) * std + mean).astype(np.float32)  # (B, T, F)
    shape = (batch, *model.cfg.state_shape)
    state = [(0.5 * rng.standard_normal(shape)).astype(np.float32) for _ in model.cfg.state_names]
    return x, state


def torch_vs_ort(model: SequenceModel, ort_model: OrtModel, rng: np.random.Generator) -> float:
    x, state = _inputs(model, rng, batch=3, steps=11)
    with torch.no_grad():
        expected = [t.numpy() for t in model(torch.from_numpy(x), *map(torch.from_numpy, state))]
    return _max_diff(expected, ort_model(x, state))


def chunked_vs_whole(model: SequenceModel, ort_model: OrtModel, rng: np.random.Generator) -> float:
    x, state = _inputs(model, rng, batch=1, steps=37)
    whole = ort_model(x, state)
    sizes = [1]
    while sum(sizes) < x.shape[1]:
        sizes.append(int(rng.integers(1, 9)))
    pieces, carried, start = [], state, 0
    for size in sizes:
        out, *carried = ort_model(x[:, start : start + size], carried)
        pieces.append(out)
        start += size
    return _max_diff(whole, [np.concatenate(pieces, axis=1), *carried])


def batched_vs_alone(model: SequenceModel, ort_model: OrtModel, rng: np.random.Generator) -> float:
    x, state = _inputs(model, rng, batch=4, steps=9)
    batched = ort_model(x, state)
    alone = [ort_model(x[i : i + 1], [s[i : i + 1] for s in state]) for i in range(x.shape[0])]
    stacked = [np.concatenate(parts, axis=0) for parts in zip(*alone, strict=True)]
    return _max_diff(batched, stacked)


def verify_export(model: SequenceModel, onnx_bytes: bytes, seed: int = 0) -> Verification:
    """All three checks; raises `ExportError` if any difference exceeds `TOLERANCE`."""
    model.eval()
    rng = np.random.default_rng(seed)
    ort_model = OrtModel(onnx_bytes, [name for name, _ in model.cfg.state_names])
    streamable = not model.cfg.bidirectional
    result = Verification(
        tolerance=TOLERANCE,
        torch_vs_onnxruntime=torch_vs_ort(model, ort_model, rng),
        chunked_vs_whole=chunked_vs_whole(model, ort_model, rng) if streamable else None,
        batched_vs_alone=batched_vs_alone(model, ort_model, rng),
    )
    for check, diff in result.model_dump(exclude={"tolerance"}).items():
        if diff is not None and diff > TOLERANCE:
            raise ExportError(f"export verification failed: {check} max abs diff {diff:.3g} > {TOLERANCE}")
    return result
