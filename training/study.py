"""The report's training runs: one `Job` per (study, model, seed), run in worker processes, cached as JSON.

Each job trains one model from scratch with one torch thread; `workers` processes run side by side (the runs are
small and bound by per-operation overhead, so two one-thread processes beat one two-thread process). A result is
written to `cache/<key>.json` as soon as it exists, so an interrupted report resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.adding import AddingTask
from training.config import ModelConfig, TrainConfig
from training.model import SequenceModel
from training.task import Task
from training.tasks import VowelsTask
from training.train import fit

log = logging.getLogger("training")
CELL_VARIANTS: dict[str, dict[str, Any]] = {  # the six cells of docs/cells.md: report label -> ModelConfig fields
    "RNN (Elman, tanh)": {"cell": "rnn"},
    "Jordan": {"cell": "jordan"},
    "GRU": {"cell": "gru"},
    "LSTM": {"cell": "lstm"},
    "peephole LSTM": {"cell": "lstm", "peephole": True},
    "coupled-gate LSTM (CIFG)": {"cell": "lstm", "coupled_gates": True},
}


def cell_variants(jordan_feedback: str) -> dict[str, dict[str, Any]]:
    """`CELL_VARIANTS` with the Jordan network's feedback set (softmax for classifiers, linear otherwise)."""
    return {(f"{label} ({jordan_feedback} feedback)" if fields["cell"] == "jordan" else label):
            ({**fields, "feedback": jordan_feedback} if fields["cell"] == "jordan" else fields)
            for label, fields in CELL_VARIANTS.items()}


@dataclass(frozen=True)
class Job:
    study: str  # "vowels" | "adding"
    label: str  # the row it belongs to
    model: dict[str, Any]  # ModelConfig fields beyond the task's sizes
    train: dict[str, Any]  # TrainConfig fields
    task: dict[str, Any] = field(default_factory=dict)  # AddingTask arguments
    probe: bool = False  # also record |dL/dh(t)| over t, before and after training

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _task(job: Job) -> Task:
    return VowelsTask() if job.study == "vowels" else AddingTask(**job.task)


def hidden_gradient_profile(model: SequenceModel, x: torch.Tensor, target: torch.Tensor) -> list[float]:
    """Mean |dL/dh(t)| over the batch for every step t, where L is the squared error read at the last step: how
    much of the loss's gradient reaches back through the recurrence to step t (it vanishes in a tanh RNN, an
    LSTM carries it). The model runs one step at a time so that every h(t) is a tensor of the graph."""
    model.eval()
    z = (x - model.mean) / model.std  # (B, T, F)
    state = model.initial_state(x.shape[0])
    hidden = []
    for t in range(x.shape[1]):
        _, state = model._recur(z[:, t : t + 1], state)  # state[0] = h(t) (B, L, H)
        state[0].retain_grad()
        hidden.append(state[0])
    pred = model.head(state[0][:, -1])[:, 0]  # (B,): the top layer's h(T), which is y(T), read from the state
    (pred - target).pow(2).mean().backward()
    return [float(h.grad.norm(dim=-1).mean()) if h.grad is not None else 0.0 for h in hidden]  # (T,)


def run_cached(job: Job, cache: Path) -> dict[str, Any]:
    """`run_job`, unless another report process sharing the cache has finished the job meanwhile."""
    path = cache / f"{job.key()}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else run_job(job)


def run_job(job: Job) -> dict[str, Any]:
    """Trains one model (one thread); returns its per-epoch history, seconds and the optional gradient probes."""
    torch.set_num_threads(1)
    task = _task(job)
    mcfg = ModelConfig(input_size=task.input_size, output_size=task.output_size, head=task.head, **job.model)
    tcfg = TrainConfig(**job.train)
    start = time.perf_counter()
    model, history = fit(task, mcfg, tcfg, progress=False)
    result: dict[str, Any] = {"epochs": history.epochs, "seconds": time.perf_counter() - start}
    if job.probe and isinstance(task, AddingTask):
        x, y = task.test_x[:256], task.test_y[:256]
        torch.manual_seed(tcfg.seed)
        fresh = SequenceModel(mcfg)  # the same initialisation as the trained one (same seed)
        result["profile_init"] = hidden_gradient_profile(fresh, x, y)
        result["profile_trained"] = hidden_gradient_profile(model, x, y)
    return result


def run_jobs(jobs: list[Job], cache: Path, workers: int, run_missing: bool = True,
             done: Callable[[Job, dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Every job's result by key; cached results are read, the others run (in `workers` processes if > 1) unless
    `run_missing` is False, when only the cached ones come back (a report of what has finished so far)."""
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        path = cache / f"{job.key()}.json"
        if path.exists():
            results[job.key()] = json.loads(path.read_text(encoding="utf-8"))
        else:
            todo.append(job)

    def keep(job: Job, result: dict[str, Any]) -> None:
        (cache / f"{job.key()}.json").write_text(json.dumps(result), encoding="utf-8")
        results[job.key()] = result
        log.info("%s %s seed %s: %.0f s", job.study, job.label, job.train.get("seed"), result["seconds"])
        if done is not None:
            done(job, result)

    if not run_missing:
        return results
    if workers <= 1:
        for job in todo:
            keep(job, run_cached(job, cache))
        return results
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_cached, job, cache): job for job in todo}
        for future in as_completed(futures):
            keep(futures[future], future.result())
    return results
