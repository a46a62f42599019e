"""The readable lines `stream` and `infer` print: a classifier's class (by label) at the last step, a regressor's
last values."""

from __future__ import annotations

import numpy as np

from seqserve_client.generated.seqserve.v1 import seqserve_pb2 as pb
from seqserve_client.summary import chunk_lines, last_step


def spec(kind: str, name: str, labels: tuple[str, ...] = ()) -> pb.OutputSpec:
    return pb.OutputSpec(tensor=pb.TensorSpec(name=name), kind=kind, labels=list(labels))


def test_a_classifier_reads_as_its_label_and_probability() -> None:
    logits = np.array([0.0, 3.0, 1.0], np.float32)
    p = np.exp(3.0) / np.exp(logits.astype(np.float64)).sum()
    assert last_step(spec("logits", "logits", ("a", "b", "c")), logits) == f"b (p {p:.2f})"
    assert last_step(spec("logits", "logits"), logits) == f"class 1 (p {p:.2f})"  # no labels: the index
    assert last_step(spec("logits", "logits"), np.array([1e4, -1e4])) == "class 0 (p 1.00)"  # no overflow


def test_a_regressor_reads_as_its_last_values() -> None:
    assert last_step(spec("regression", "forecast"), np.array([12.5])) == "forecast 12.5"
    many = last_step(spec("regression", "y"), np.arange(6, dtype=np.float32))
    assert many == "y 0, 1, 2, 3, ..."


def test_one_line_per_chunk_with_its_steps() -> None:
    pieces = [np.array([[0, 1], [1, 0]]), np.array([[0, 5]])]
    assert chunk_lines(spec("logits", "logits", ("no", "yes")), pieces) == [
        "chunk 1, steps 1-2: no (p 0.73)", "chunk 2, steps 3-3: yes (p 0.99)"]
