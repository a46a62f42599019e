"""Command line: `python -m training {train,export,export-module,evaluate,build-all,report}`; errors: one line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from training import export_module
from training.build import SHIPPED, build, export_trained
from training.catalog import write_catalog
from training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from training.config import CELLS, ModelConfig, TrainConfig
from training.errors import ExportError, TrainingError
from training.report import PARTS, ReportSettings, run_report
from training.report_adding import AddingSettings
from training.report_vowels import VowelsSettings
from training.tasks import TASK_NAMES, make_task
from training.train import evaluate, fit

log = logging.getLogger("training")


def _train(args: argparse.Namespace) -> None:
    task = make_task(args.task)
    mcfg = ModelConfig(cell=args.cell, input_size=task.input_size, hidden_size=args.hidden, layers=args.layers,
                       output_size=task.output_size, dropout=args.dropout, bidirectional=args.bidirectional,
                       forget_bias=args.forget_bias, chrono=args.chrono, output_dropout=args.output_dropout,
                       head=task.head, peephole=args.peephole, vocab_size=getattr(task, "vocab_size", 0),
                       coupled_gates=args.coupled_gates,
                       feedback=args.feedback or ("softmax" if task.output_size > 1 else "linear"))
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, clip=args.clip, seed=args.seed,
                       input_noise=args.input_noise, weight_decay=args.weight_decay, crop_prefix=args.crop_prefix)
    model, history = fit(task, mcfg, tcfg, progress=not args.no_progress)
    save_checkpoint(args.out, Checkpoint(task.name, model, tcfg, history))
    print(json.dumps({"checkpoint": str(args.out), **history.final}))


def _export(args: argparse.Namespace) -> None:
    ckpt = load_checkpoint(args.checkpoint)
    manifest = export_trained(ckpt, make_task(ckpt.task), args.models, args.name, args.version, args.description,
                              args.force)
    print(manifest.model_dump_json(include={"name", "version", "verification", "onnx"}))


def _evaluate(args: argparse.Namespace) -> None:
    ckpt = load_checkpoint(args.checkpoint)
    print(json.dumps(evaluate(ckpt.model, make_task(ckpt.task))))


def _build_all(args: argparse.Namespace) -> None:
    for spec in SHIPPED:
        if not args.only or spec.name in args.only:
            build(spec, args.models, args.runs, args.force, progress=not args.no_progress)
    log.info("wrote %s", write_catalog(args.models))


def _report(args: argparse.Namespace) -> None:
    adding = AddingSettings(length=args.length, ablation_length=args.ablation_length or args.length,
                            long_length=args.long_length, epochs=args.epochs, seeds=args.adding_seeds)
    settings = ReportSettings(adding=adding,
                              vowels=VowelsSettings(seeds=args.vowels_seeds), parts=tuple(args.parts),
                              workers=args.workers, cache=args.cache, fresh=args.fresh,
                              cached_only=args.cached_only, reverse=args.reverse)
    print(run_report(args.out, settings).read_text(encoding="utf-8"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one model on a task and save a checkpoint")
    train.add_argument("--task", choices=TASK_NAMES, default="vowels")
    train.add_argument("--cell", default="lstm", help=f"one of {', '.join(CELLS)}")
    train.add_argument("--hidden", type=int, default=32)
    train.add_argument("--layers", type=int, default=1)
    train.add_argument("--dropout", type=float, default=0.0, help="between stacked layers")
    train.add_argument("--output-dropout", type=float, default=0.0, help="on the top layer, before the head")
    train.add_argument("--bidirectional", action="store_true")
    train.add_argument("--forget-bias", type=float, default=1.0, help="LSTM forget-gate bias at initialisation")
    train.add_argument("--chrono", type=int, default=0, help="LSTM chrono init (Tallec & Ollivier 2018) with this "
                       "T_max: b_f ~ log U(1, T_max - 1), b_i = -b_f; 0 (default): --forget-bias")
    train.add_argument("--peephole", action="store_true", help="LSTM with peephole connections (Gers 2000)")
    train.add_argument("--coupled-gates", action="store_true", help="LSTM with one input-forget gate, i = 1 - f")
    train.add_argument("--feedback", choices=("softmax", "linear"),
                       help="Jordan: feed back softmax(y(t-1)) or y(t-1) (default: softmax for classifiers)")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--clip", type=float, default=1.0, help="max global gradient norm; 0 disables clipping")
    train.add_argument("--input-noise", type=float, default=0.0)
    train.add_argument("--crop-prefix", type=float, default=0.0,
                       help="drop a random prefix of up to this fraction of each training sequence (classifiers)")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=Path("runs/checkpoint.pt"))
    train.set_defaults(func=_train)
    export = sub.add_parser("export", help="export a checkpoint to models/<name>/<version>/ (verified)")
    export.add_argument("checkpoint", type=Path)
    export_module.add_destination(export)
    export.set_defaults(func=_export)
    ev = sub.add_parser("evaluate", help="test metrics of a checkpoint on its task")
    ev.add_argument("checkpoint", type=Path)
    ev.set_defaults(func=_evaluate)
    build_all = sub.add_parser("build-all", help="retrain and export every shipped model")
    build_all.add_argument("--models", type=Path, default=Path("models"))
    build_all.add_argument("--runs", type=Path, default=Path("runs"), help="where checkpoints go")
    build_all.add_argument("--only", nargs="*", help="names of shipped models to build (default: all)")
    build_all.add_argument("--force", action="store_true")
    build_all.set_defaults(func=_build_all)
    report = sub.add_parser("report", help="the fidelity studies: vowels and adding problem (docs/report/)")
    report.add_argument("--out", type=Path, default=Path("docs/report"))
    report.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    report.add_argument("--length", type=int, default=200, help="adding problem sequence length")
    report.add_argument("--ablation-length", type=int, help="adding problem length of the LSTM ablation (default: "
                        "--length)")
    report.add_argument("--long-length", type=int, default=AddingSettings.long_length,
                        help="adding problem: every cell again at this length (0: none)")
    report.add_argument("--epochs", type=int, default=AddingSettings.epochs,
                        help=f"adding problem epochs ({AddingSettings.steps_per_epoch} steps each)")
    report.add_argument("--adding-seeds", type=int, default=3)
    report.add_argument("--vowels-seeds", type=int, default=5)
    report.add_argument("--workers", type=int, default=2, help="training processes side by side")
    report.add_argument("--cache", type=Path, default=Path("runs/report"), help="finished runs, to resume")
    report.add_argument("--fresh", action="store_true", help="ignore (delete) the cache first")
    report.add_argument("--cached-only", action="store_true",
                        help="write the tables from the runs finished so far (in the cache); run nothing")
    report.add_argument("--reverse", action="store_true",
                        help="run the jobs last-first, e.g. in a second process that shares the cache")
    report.set_defaults(func=_report)
    export_module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except ExportError as exc:  # as `python -m modelrepo import`: nothing written, exit status 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
