"""Main job: run a study from one config (``python jobs/sweep.py --config C``).

Works locally (embedded Ray, SQLite MLflow store) and through ``ray job submit``.
"""

from __future__ import annotations

import argparse
import sys

from wsss.cli import EXIT_OK, EXIT_PROBLEM, run_handler


def run(args: argparse.Namespace) -> int:
    from wsss.config import load_config
    from wsss.data.check import check_report, format_report
    from wsss.data.prepare import prepare_dataset

    config = load_config(args.config)
    dataset = prepare_dataset(config.data)
    report = check_report(dataset, config.data.error_budget, progress=True)
    print(format_report(report))
    return EXIT_OK if report["usable"] else EXIT_PROBLEM


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="study config (YAML)")
    return run_handler(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
