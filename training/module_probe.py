"""What a user's module takes, found by running it once, and the wrapper that gives it the served layout.

`probe` calls `forward(*inputs, *state)` on a batch of 2 and 5 steps, batch-first and time-major, so a wrong
signature, a state that does not fit, a time-major module given as batch-first (or the reverse) and a float
input where the module wants token ids are each one line (`ExportError`) before anything is exported.
`Canonical` is the module as served: every input `(batch, time, features)` (token ids `(batch, time, 1)`),
outputs `(batch, time, size)`, state in the module's own layout (the importer's wrapper moves its batch axis).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from training.errors import ExportError
from training.projected import quiet

BATCH, STEPS = 2, 5  # distinct, so the run tells batch-first from time-major


@dataclass(frozen=True)
class Declared:
    """One data input as the module takes it: float `(B, T, features)` or token ids `(B, T)` (`vocab` set)."""

    name: str
    features: int
    dtype: torch.dtype
    vocab: int | None = None

    @property
    def tokens(self) -> bool:
        return not self.dtype.is_floating_point

    def example(self, batch: int, steps: int, time_major: bool, gen: torch.Generator) -> Tensor:
        lead = (steps, batch) if time_major else (batch, steps)
        if self.tokens:
            return torch.randint(0, self.vocab or 1, lead, generator=gen, dtype=self.dtype)  # (B, T) ids
        return torch.randn(*lead, self.features, generator=gen).to(self.dtype)  # (B, T, F)


@dataclass(frozen=True)
class Probe:
    time_major: bool
    outputs: int  # how many tensors before the new state
    streamable: bool  # False: a bidirectional recurrent layer inside (whole sequences only)


def _state_like(state: Sequence[Tensor], axes: Sequence[int], batch: int) -> list[Tensor]:
    return [torch.zeros([batch if a == axis else d for a, d in enumerate(s.shape)], dtype=s.dtype)
            for s, axis in zip(state, axes, strict=True)]


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _run(module: nn.Module, inputs: list[Declared], state: list[Tensor], time_major: bool
         ) -> tuple[list[Tensor] | None, str]:
    gen = torch.Generator().manual_seed(0)
    xs = [d.example(BATCH, STEPS, time_major, gen) for d in inputs]
    try:
        with torch.no_grad(), quiet():
            results = module(*xs, *state)
    except Exception as exc:
        return None, _first_line(exc)
    return list(results) if isinstance(results, tuple | list) else [results], ""


def probe(module: nn.Module, inputs: list[Declared], state: Sequence[Tensor], axes: Sequence[int],
          time_major: bool | None) -> Probe:
    """How the module runs; `time_major` None: found from the run. `ExportError` with one line otherwise."""
    what = type(module).__qualname__
    try:
        inspect.signature(module.forward).bind(*(d.name for d in inputs), *state)
    except TypeError as exc:
        params = ", ".join(inspect.signature(module.forward).parameters)
        raise ExportError(f"{what}.forward({params}) cannot take {len(inputs)} input(s) "
                          f"and {len(state)} state tensor(s) ({exc}); expected forward(x, ..., *state) returning "
                          "(outputs..., *new_state)") from None
    given = _state_like(state, axes, BATCH)
    tries = [time_major] if time_major is not None else [False, True]
    runs = {tm: _run(module, inputs, given, tm) for tm in (False, True)}
    fits = {tm: _fits(runs[tm][0], given, axes, tm) for tm in (False, True)}
    chosen = next((tm for tm in tries if fits[tm] == ""), None)
    if chosen is None:
        if time_major is not None and fits[not time_major] == "":
            raise ExportError(f"{what} is {'batch-first' if time_major else 'time-major'} (it runs on a "
                              f"{'(batch, time' if time_major else '(time, batch'}, ...) input), but it was given "
                              f"as {'time-major' if time_major else 'batch-first'}: "
                              f"{'drop --time-major' if time_major else 'pass --time-major (time_major=True)'}")
        results, error = runs[tries[0]]
        raise ExportError(_explain(what, inputs, error or fits[tries[0]]))
    results = runs[chosen][0]
    assert results is not None
    bidirectional = any(isinstance(m, nn.RNNBase) and m.bidirectional for m in module.modules())
    return Probe(chosen, len(results) - len(state), streamable=bool(state) and not bidirectional)


def _fits(results: list[Tensor] | None, state: list[Tensor], axes: Sequence[int], time_major: bool) -> str:
    """Why `results` is not (outputs..., *new_state) in the layout tried; "" when it is."""
    if results is None:
        return "forward failed"
    outputs = len(results) - len(state)
    if outputs < 1:
        return (f"forward returned {len(results)} tensors for {len(state)} state tensors; expected (outputs..., "
                "*new_state) with at least one output")
    lead = (STEPS, BATCH) if time_major else (BATCH, STEPS)
    for k, y in enumerate(results[:outputs]):
        if y.dim() < 3 or tuple(y.shape[:2]) != lead:
            return f"output {k} has shape {list(y.shape)}; expected ({'time, batch' if time_major else 'batch, time'}" \
                   ", size) for an input of batch 2 and 5 steps"
    for k, (new, old) in enumerate(zip(results[outputs:], state, strict=True)):
        if new.shape != old.shape:
            return (f"state {k} comes back with shape {list(new.shape)} but was given as {list(old.shape)} (batch "
                    f"axis {axes[k]}): the state spec does not match the module")
    return ""


def _explain(what: str, inputs: list[Declared], error: str) -> str:
    if "indices" in error and any(not d.tokens for d in inputs):
        return (f"{what} wants integer token ids where a float input is declared ({error}); declare the input as "
                "NAME=int64:VOCAB (--input) or give an integer example")
    if error.startswith("forward returned") or error.startswith("state ") or error.startswith("output "):
        return f"{what}: {error}"
    return f"{what}.forward(x, *state) fails on a (batch 2, time 5) input with the state given: {error}"


class Canonical(nn.Module):
    """The module as served: inputs `(B, T, F)` (ids `(B, T, 1)`), outputs `(B, T, ·)`, its own state layout."""

    def __init__(self, module: nn.Module, inputs: list[Declared], outputs: int, time_major: bool) -> None:
        super().__init__()
        self.module = module
        self.tokens = [d.tokens for d in inputs]
        self.outputs, self.time_major = outputs, time_major

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        n = len(self.tokens)
        xs = [x[..., 0] if tokens else x for x, tokens in zip(args[:n], self.tokens, strict=True)]  # (B, T[, F])
        if self.time_major:
            xs = [x.transpose(0, 1) for x in xs]  # (T, B, ...)
        results = self.module(*xs, *args[n:])
        results = list(results) if isinstance(results, tuple | list) else [results]
        ys = results[: self.outputs]
        if self.time_major:
            ys = [y.transpose(0, 1) for y in ys]  # (B, T, ...)
        return (*ys, *results[self.outputs :])
