"""Checks that an exported graph is what its manifest says: file hash, tensor names, dtypes, ranks, sizes.

Each check raises `ModelInvalid` with a one-line reason that `Registry.statuses()` reports.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from modelrepo import Manifest
from service.engine.inputs import zero_inputs
from service.engine.runtime import Runtime, TensorInfo, to_host

Expected = tuple[str, tuple[int | None, ...]]  # (dtype, shape with None for dynamic axes)


class ModelInvalid(Exception):
    """The model version cannot be served; `str(exc)` says why."""


def check_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelInvalid(f"sha256 of {path.name} is {digest.hexdigest()}, the manifest says {expected}")


def check_graph(manifest: Manifest, runtime: Runtime) -> None:
    """The graph's inputs and outputs match the manifest exactly (names, dtypes, ranks, static sizes)."""
    want_in: dict[str, Expected] = {spec.name: (spec.dtype, (None, None, spec.features)) for spec in manifest.inputs}
    want_out: dict[str, Expected] = {o.name: (o.dtype, (None, None, o.size)) for o in manifest.outputs}
    for pair in manifest.state:
        want_in[pair.input] = (pair.dtype, (None, *pair.shape))
        want_out[pair.output] = (pair.dtype, (None, *pair.shape))
    _match("input", want_in, runtime.inputs)
    _match("output", want_out, runtime.outputs)
    for tensor in runtime.inputs:  # outputs may carry onnxruntime's inferred sizes; the warm-up checks them
        if tensor.shape and tensor.shape[0] is not None:
            raise ModelInvalid(f"graph input {tensor.name!r} has a fixed size {tensor.shape[0]} on axis 0 "
                               f"(shape {list(tensor.shape)}); expected {_layout(manifest)} with a dynamic batch "
                               "axis first (python -m modelrepo import wraps other layouts)")


def warm_up(manifest: Manifest, runtime: Runtime) -> None:
    """Runs at batch 1 and 3 (2 and 3 steps) from the initial state; shapes and values must be sane."""
    for batch, steps in ((1, 2), (3, 3)):
        _warm_up(manifest, runtime, batch, steps)


def _warm_up(manifest: Manifest, runtime: Runtime, batch: int, steps: int) -> None:
    inputs = zero_inputs(manifest, batch, steps)
    state = {p.input: np.full((batch, *p.shape), p.initial, dtype=p.dtype) for p in manifest.state}
    try:
        outputs, new_state = runtime.run(inputs, state)
    except Exception as exc:
        message = " ".join(str(exc).split())
        raise ModelInvalid(f"warm-up at batch {batch} failed; expected {_layout(manifest)}; onnxruntime: "
                           f"{type(exc).__name__}: {message}") from exc
    for o in manifest.outputs:
        got = np.asarray(outputs[o.name])
        if got.shape != (batch, steps, o.size) or not np.isfinite(got).all():
            raise ModelInvalid(f"warm-up: output {o.name!r} has shape {list(got.shape)} or non-finite values")
    for p in manifest.state:
        shape = to_host(new_state[p.input]).shape
        if shape != (batch, *p.shape):
            raise ModelInvalid(f"warm-up: state {p.output!r} has shape {list(shape)}")


def _layout(manifest: Manifest) -> str:
    """The canonical layout of the manifest, e.g. `input (batch, time, 12), state h0 (batch, 1, 48)`."""
    state = "".join(f", state {p.input} (batch, {', '.join(map(str, p.shape))})" for p in manifest.state)
    inputs = ", ".join(f"input {i.name} (batch, time, {i.features})" for i in manifest.inputs)
    return f"{inputs}{state}"


def _match(kind: str, want: dict[str, Expected], got: list[TensorInfo]) -> None:
    names = {t.name for t in got}
    if names != set(want):
        raise ModelInvalid(f"graph {kind}s are {sorted(names)}, the manifest says {sorted(want)}")
    for tensor in got:
        dtype, shape = want[tensor.name]
        if tensor.dtype != dtype:
            raise ModelInvalid(f"graph {kind} {tensor.name!r} is {tensor.dtype}, the manifest says {dtype}")
        if len(tensor.shape) != len(shape) or any(
            w is not None and g is not None and g != w for g, w in zip(tensor.shape, shape, strict=True)
        ):
            raise ModelInvalid(f"graph {kind} {tensor.name!r} has shape {list(tensor.shape)}, expected {list(shape)}")
