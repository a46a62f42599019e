"""Streamed == whole, through any target: `python check_results.py [--target HOST:PORT] [--streams N]`.

Used by tests/deploy/test_balancer.py and, inside a container of the compose stack, by compose_smoke.sh. Every
stream sends a random sequence in chunks of random lengths to one of the server's streamable models; the
concatenated per-chunk outputs must equal the whole sequence run by `Infer` (within 1e-4). Exit 0 when all agree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from seqserve_client import Client, Stream

TOLERANCE = 1e-4


class SequenceRun:
    """One sequence streamed chunk by chunk over its own session, with the whole-sequence answer to compare."""

    def __init__(self, client: Client, model: str, rng: np.random.Generator, steps: int = 48) -> None:
        info = client.model(model)
        self.model = model
        self.output = info.outputs[0].tensor.name
        width, vocab = info.input.shape[-1], info.input.vocab_size  # token models (vocab > 0) take int64 ids
        self.x = (rng.integers(0, vocab, (steps, width)) if vocab else rng.standard_normal((steps, width))).astype(
            np.int64 if vocab else np.float32)
        whole, _ = client.infer(model, self.x[None])
        self.expected = whole[self.output][0]
        cuts = np.sort(rng.choice(np.arange(1, steps), size=5, replace=False))
        self.chunks = np.split(self.x, cuts)
        self.received: list[np.ndarray] = []
        self.stream: Stream = client.stream(model)

    @property
    def done(self) -> bool:
        return len(self.received) == len(self.chunks)

    def step(self) -> None:
        """Send the next chunk and keep its outputs (raises `ServerError` if the server refuses or is gone)."""
        self.received.append(self.stream.send(self.chunks[len(self.received)])[self.output])

    def finish(self) -> float:
        """Send the remaining chunks, end the session; the largest difference from the whole-sequence run."""
        while not self.done:
            self.step()
        self.stream.close()
        return float(np.max(np.abs(np.concatenate(self.received) - self.expected)))


def streamable_models(client: Client) -> list[str]:
    return sorted(m.name for m in client.models() if m.ready and m.streamable)


def open_runs(client: Client, count: int, seed: int = 0) -> list[SequenceRun]:
    """`count` sessions spread over every streamable model, opened one after the other."""
    rng = np.random.default_rng(seed)
    models = streamable_models(client)
    return [SequenceRun(client, models[i % len(models)], rng) for i in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="127.0.0.1:8001")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--pause-after", type=int, default=0, metavar="K",
                        help="after K chunks of every stream, print PAUSED and wait for a line on stdin (the compose "
                        "smoke test kills a replica then; the streams must resume on the others)")
    args = parser.parse_args(argv)
    with Client(args.target) as client:
        runs = open_runs(client, args.streams)
        if args.pause_after:
            for run in runs:
                for _ in range(args.pause_after):
                    run.step()
            print("PAUSED", flush=True)
            sys.stdin.readline()
        errors = {f"{run.model}#{i}": err for i, run in enumerate(runs) if (err := run.finish()) > TOLERANCE}
    resumed = sum(run.stream.resumes for run in runs)
    lost = sum(len(run.chunks) - len(run.received) for run in runs)  # chunks never answered
    # a chunk applied twice (or skipped) changes every later output of its stream: it counts as mismatched
    print(f"check_results: {args.streams} streams over {sorted({r.model for r in runs})} ({resumed} resumed, "
          f"{lost} chunks lost, {len(errors)} mismatched): "
          f"{'all equal the whole-sequence run' if not errors else f'MISMATCH {errors}'}")
    return 1 if errors or lost else 0


if __name__ == "__main__":
    sys.exit(main())
