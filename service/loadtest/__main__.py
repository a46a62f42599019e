"""`python -m service.loadtest --model vowels_lstm --streams 64 --chunk 10 --duration 10 [--rate R] [--json F]`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from service.loadtest.config import parse_args
from service.loadtest.runner import run_load


def main(argv: Sequence[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    report = run_load(config)
    print(report.table())
    if json_path is not None:
        report.write_json(json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
