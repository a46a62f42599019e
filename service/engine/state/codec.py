"""How the session store holds a session: its state as bytes in manifest order, each step's answer as bytes, and
the framing of a batch's rows for the commit script (`service/engine/state/store.py`)."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np

from modelrepo import StatePair
from service.engine.errors import Unavailable


def encode(pairs: Sequence[StatePair], rows: dict[str, np.ndarray], i: int) -> bytes:
    """Row `i` of batch-first host arrays `rows` as bytes, in manifest order."""
    return b"".join(np.ascontiguousarray(rows[p.input][i], dtype=p.dtype).tobytes() for p in pairs)


def encode_answers(outputs: dict[str, np.ndarray], rows: Sequence[int]) -> list[bytes]:
    """Rows `rows` of batch-first outputs as bytes each: a JSON header of names, dtypes and shapes (the same for
    every row of a batch, built once), then the data."""
    arrays = {name: np.ascontiguousarray(value) for name, value in outputs.items()}
    header = json.dumps([[name, a.dtype.str, list(a.shape[1:])] for name, a in arrays.items()]).encode() + b"\n"
    return [header + b"".join(a[i].tobytes() for a in arrays.values()) for i in rows]


def frame(fields: Sequence[bytes]) -> bytes:
    """Fields as COMMIT reads them: each a 4-byte big-endian length and the bytes."""
    return b"".join(part for f in fields for part in (struct.pack(">I", len(f)), f))


def decode_answer(data: bytes) -> dict[str, np.ndarray]:
    """`encode_answer`'s outputs `{name: (time, size)}` (empty for a reset)."""
    header, _, body = data.partition(b"\n")
    answer, offset = {}, 0
    for name, dtype, shape in json.loads(header):
        value = np.frombuffer(body, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
        answer[name] = value.copy()
        offset += value.nbytes
    return answer


def decode(pairs: Sequence[StatePair], data: bytes) -> dict[str, np.ndarray]:
    """The state of one session (shapes without the batch axis) from `encode`'s bytes."""
    state, offset = {}, 0
    for p in pairs:
        count = int(np.prod(p.shape))
        value = np.frombuffer(data, dtype=p.dtype, count=count, offset=offset).reshape(p.shape)
        state[p.input] = value.copy()
        offset += value.nbytes
    if offset != len(data):
        raise Unavailable("the session store holds state of another shape for this session")
    return state
