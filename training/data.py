"""Loaders for the committed data files (`training/data/`, see SOURCES.md). No network.

Every loader raises `DataError` with a one-line message naming the file (and line) for a missing or
malformed file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.errors import DataError

DATA_DIR = Path(__file__).resolve().parent / "data"
VOWELS_TRAIN = DATA_DIR / "JapaneseVowels_TRAIN.ts"
VOWELS_TEST = DATA_DIR / "JapaneseVowels_TEST.ts"
SUNSPOTS = DATA_DIR / "sunspots_monthly.dat"
_YEAR_ROW = re.compile(r"^(1[6-9]\d\d|20\d\d)\s+\S")


@dataclass(frozen=True)
class LabelledSequences:
    """Variable-length multivariate sequences, one class label each."""

    sequences: list[np.ndarray]  # each (T_i, F) float32
    labels: np.ndarray  # (N,) int64, indices into `classes`
    classes: list[str]


def _read_lines(path: Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read data file: {exc}") from None


def _parse_ts_row(path: Path, lineno: int, line: str, dims: int) -> tuple[np.ndarray, str]:
    *channels, label = line.split(":")
    if len(channels) != dims:
        raise DataError(f"{path}:{lineno}: expected {dims} dimensions, found {len(channels)}")
    try:
        columns = [np.array([float(v) for v in ch.split(",")], dtype=np.float32) for ch in channels]
    except ValueError:
        raise DataError(f"{path}:{lineno}: non-numeric value in a series") from None
    if len({len(c) for c in columns}) != 1:
        raise DataError(f"{path}:{lineno}: dimensions have different lengths")
    return np.stack(columns, axis=1), label.strip()  # (T, F)


def load_ts(path: Path) -> LabelledSequences:
    """A multivariate sktime `.ts` file: `@` header lines, then one series per line, `dim:dim:...:label`."""
    lines = _read_lines(path)
    header: dict[str, str] = {}
    rows: list[tuple[int, str]] = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            key, _, value = line[1:].partition(" ")
            header[key.lower()] = value.strip()
        elif "data" in header:
            rows.append((lineno, line))
    if "data" not in header or "dimensions" not in header or "classlabel" not in header:
        raise DataError(f"{path}: not a .ts file (missing @dimensions, @classLabel or @data)")
    if not rows:
        raise DataError(f"{path}: no series after @data")
    classes = header["classlabel"].split()[1:]
    sequences, labels = [], []
    for lineno, line in rows:
        seq, label = _parse_ts_row(path, lineno, line, int(header["dimensions"]))
        if label not in classes:
            raise DataError(f"{path}:{lineno}: label {label!r} not among the declared classes")
        sequences.append(seq)
        labels.append(classes.index(label))
    return LabelledSequences(sequences, np.array(labels, dtype=np.int64), classes)


def load_monthly_table(path: Path) -> np.ndarray:
    """A `year v1 .. v12` table (the last year may be partial): the values in time order, float32."""
    values: list[float] = []
    for lineno, raw in enumerate(_read_lines(path), start=1):
        if not _YEAR_ROW.match(raw):
            continue
        fields = raw.split()[1:]
        if len(fields) > 12:
            raise DataError(f"{path}:{lineno}: more than 12 monthly values")
        try:
            values.extend(float(v) for v in fields)
        except ValueError:
            raise DataError(f"{path}:{lineno}: non-numeric monthly value") from None
    if len(values) < 24:
        raise DataError(f"{path}: no monthly table found (fewer than 24 values)")
    return np.array(values, dtype=np.float32)  # (N,)
