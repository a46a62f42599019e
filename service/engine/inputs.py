"""A model's data inputs, checked, and several inputs carried through the batcher as one array.

A chunk is one array `(time, features)` for a model with one data input (its manifest's `input`), or a mapping
`{name: (time, features)}` with every input the manifest lists (`input` and `extra_inputs`). The batcher stacks
one array per step, so the inputs of a model with several are packed side by side on the feature axis into one
float64 array (every float32 / float16 value and every token id below 2**53 is exact in float64) under the
first input's name, and `PackedRuntime` unpacks them, each in its own dtype, just before the run. A model with
one data input is never packed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelrepo import Manifest, SequenceInput
from service.engine.errors import InvalidInput, clip

Chunk = np.ndarray | Mapping[str, np.ndarray]  # one input's array, or every input by name


def check_token_ids(name: str, x: np.ndarray, vocab_size: int) -> None:
    """Every id of an integer input in `[0, vocab_size)`; `InvalidInput` otherwise (the chunk is not admitted)."""
    low, high = int(x.min()), int(x.max())
    if low < 0 or high >= vocab_size:
        raise InvalidInput(f"input {name!r} holds token id {low if low < 0 else high}; ids must be in "
                           f"[0, {vocab_size})")


def batch_size(chunk: Chunk) -> int:
    """Axis 0 of a batch's inputs (of its first input; `Inputs.check` sees that they agree)."""
    first = chunk if isinstance(chunk, np.ndarray) else next(iter(chunk.values()), np.zeros((0,)))
    return int(first.shape[0]) if first.ndim else 0


def row(chunk: Chunk, index: int) -> Chunk:
    """One sequence of a batch: `(time, features)` of every input."""
    return chunk[index] if isinstance(chunk, np.ndarray) else {k: v[index] for k, v in chunk.items()}


def zero_inputs(manifest: Manifest, batch: int, steps: int) -> dict[str, np.ndarray]:
    """Every data input `(batch, steps, features)` of zeros (id 0 for token inputs), as the graph takes them."""
    return {i.name: np.zeros((batch, steps, i.features), dtype=i.dtype) for i in manifest.inputs}


class Inputs:
    """Checks a chunk (or a whole batch) of every data input of one model; packs several into one array."""

    def __init__(self, manifest: Manifest, reject_nonfinite: bool) -> None:
        self.model = manifest.name
        self.specs = manifest.inputs
        self.packed = len(self.specs) > 1
        self._dtypes = [np.dtype(s.dtype) for s in self.specs]
        self._reject_nonfinite = reject_nonfinite
        bounds = np.cumsum([0, *(s.features for s in self.specs)])
        self._slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    def check(self, chunk: Chunk, axes: tuple[str, ...]) -> np.ndarray:
        """The chunk as the batcher takes it (packed when several); `InvalidInput` when any input is wrong."""
        if not isinstance(chunk, Mapping):
            if self.packed:
                names = [s.name for s in self.specs]
                raise InvalidInput(f"model {self.model!r} takes {len(names)} inputs {names}; send each by name")
            return self._one(self.specs[0], self._dtypes[0], chunk, axes)
        names = [s.name for s in self.specs]
        if set(chunk) != set(names):
            raise InvalidInput(f"model {self.model!r} takes the inputs {names}, got {clip(sorted(map(str, chunk)))}")
        arrays = [self._one(s, d, chunk[s.name], axes) for s, d in zip(self.specs, self._dtypes, strict=True)]
        if not self.packed:
            return arrays[0]
        if len({a.shape[:-1] for a in arrays}) != 1:
            raise InvalidInput(f"the inputs {names} must share their leading axes ({', '.join(axes[:-1])}), got "
                               f"{[list(a.shape) for a in arrays]}")
        return np.concatenate([a.astype(np.float64) for a in arrays], axis=-1)

    def unpack(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The packed `(..., sum features)` array back to every input in its own dtype."""
        return {s.name: np.ascontiguousarray(x[..., cut]).astype(d)
                for s, d, cut in zip(self.specs, self._dtypes, self._slices, strict=True)}

    def _one(self, spec: SequenceInput, dtype: np.dtype, x: Any, axes: tuple[str, ...]) -> np.ndarray:
        what = f"input {spec.name!r}" if self.packed else f"model {self.model!r}"
        if not isinstance(x, np.ndarray):
            raise InvalidInput(f"expected an array, got {type(x).__name__}")
        if x.dtype != dtype:
            raise InvalidInput(f"dtype {x.dtype} not accepted; {what} takes {spec.dtype}")
        if x.ndim != len(axes):
            raise InvalidInput(f"expected shape ({', '.join(axes)}), got rank {x.ndim} shape {list(x.shape)}")
        if x.shape[-1] != spec.features:
            raise InvalidInput(f"expected {spec.features} features on the last axis, got {x.shape[-1]}")
        if x.size == 0:
            raise InvalidInput(f"empty input, shape {list(x.shape)}; every axis must be >= 1")
        if spec.vocab_size is not None:
            check_token_ids(spec.name, x, spec.vocab_size)
        elif self._reject_nonfinite and not np.isfinite(x).all():
            raise InvalidInput("input holds NaN or Inf values")
        return np.ascontiguousarray(x)


class PackedRuntime:
    """A runtime whose first data input carries every input packed (`Inputs.check`); the rest is delegated."""

    def __init__(self, runtime: Any, inputs: Inputs) -> None:
        self._runtime, self._inputs = runtime, inputs
        self._name = inputs.specs[0].name

    def run(self, inputs: dict[str, np.ndarray], state: dict[str, Any]) -> tuple[dict[str, np.ndarray], Any]:
        if set(inputs) == {self._name}:
            inputs = self._inputs.unpack(inputs[self._name])
        return self._runtime.run(inputs, state)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)
