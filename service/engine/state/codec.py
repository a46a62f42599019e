"""How the session store holds a session: its state as bytes in manifest order, and each step's answer as bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from modelrepo import StatePair
from service.engine.errors import Unavailable


def _row_bytes(arrays: Sequence[np.ndarray], rows: Sequence[int]) -> list[bytes]:
    """Rows `rows` of batch-first arrays, each row's arrays side by side as bytes (one copy for the batch)."""
    flat = [np.ascontiguousarray(a[list(rows)]).reshape(len(rows), -1).view(np.uint8) for a in arrays]
    table = flat[0] if len(flat) == 1 else np.concatenate(flat, axis=1)
    return [row.tobytes() for row in table]


def encode(pairs: Sequence[StatePair], rows: dict[str, np.ndarray], which: Sequence[int]) -> list[bytes]:
    """Rows `which` of batch-first host state arrays as bytes each, in manifest order."""
    if not pairs:
        return [b"" for _ in which]
    return _row_bytes([rows[p.input].astype(p.dtype, copy=False) for p in pairs], which)


def encode_answers(outputs: dict[str, np.ndarray], rows: Sequence[int]) -> list[bytes]:
    """Rows `rows` of batch-first outputs as bytes each: a JSON header of names, dtypes and shapes (the same for
    every row of a batch, built once), then the data."""
    header = json.dumps([[name, a.dtype.str, list(a.shape[1:])] for name, a in outputs.items()]).encode() + b"\n"
    if not outputs:
        return [header for _ in rows]
    return [header + data for data in _row_bytes(list(outputs.values()), rows)]


def decode_answer(data: bytes) -> dict[str, np.ndarray]:
    """`encode_answer`'s outputs `{name: (time, size)}` (empty for a reset); `Unavailable` for bytes it cannot read."""
    header, _, body = data.partition(b"\n")
    answer, offset = {}, 0
    try:
        for name, dtype, shape in json.loads(header):
            value = np.frombuffer(body, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
            answer[name] = value.copy()
            offset += value.nbytes
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise Unavailable("the session store holds an answer this server cannot read") from exc
    return answer


def decode(pairs: Sequence[StatePair], data: bytes) -> dict[str, np.ndarray]:
    """The state of one session (shapes without the batch axis) from `encode`'s bytes."""
    expected = sum(int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize for p in pairs)
    if expected != len(data):  # checked first: frombuffer would raise on too few bytes
        raise Unavailable("the session store holds state of another shape for this session")
    state, offset = {}, 0
    for p in pairs:
        value = np.frombuffer(data, dtype=p.dtype, count=int(np.prod(p.shape)), offset=offset).reshape(p.shape)
        state[p.input] = value.copy()
        offset += value.nbytes
    return state
