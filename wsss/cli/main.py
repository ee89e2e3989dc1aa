"""``wsss <verb>``: one parser for every verb; ``jobs/*.py`` call the same functions.

Each verb group is one small module of this package with an ``add_parser(verbs)``; verbs parse
their arguments and call the library, nothing else.

Exit codes: 0 success, 1 the work ran and found a problem (e.g. an unusable dataset),
2 bad input (config, paths, arguments) detected before any work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from wsss import console
from wsss.cli import benchmark, classify, config, data, export, import_masks, predict, pseudo, report, sweep, train
from wsss.cli import eval as evaluate
from wsss.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROBLEM, UsageError
from wsss.config import ConfigError
from wsss.data.imagefolder import DatasetFormatError
from wsss.data.quarantine import ErrorBudgetExceeded
from wsss.data.records import DatasetMissingError
from wsss.masks.integrity import MaskSetError
from wsss.masks.reviewed import ReviewFileError
from wsss.masks.scoring import PredictionError
from wsss.models.classifier import WeightsMissingError

VERB_GROUPS = (config, data, evaluate, classify, pseudo, train, predict, sweep, report, benchmark, export,
               import_masks)
__all__ = ["EXIT_BAD_INPUT", "EXIT_OK", "EXIT_PROBLEM", "build_parser", "main", "run_handler"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsss", description="Weakly supervised semantic segmentation on Ray.",
        epilog="Exit codes: 0 success, 1 the work found a problem, 2 bad input.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for group in VERB_GROUPS:
        group.add_parser(verbs)
    return parser


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a verb, turning the project's input errors into a message and exit code 2."""
    try:
        return handler(args)
    except (ConfigError, DatasetFormatError, DatasetMissingError, MaskSetError, PredictionError,
            ReviewFileError, UsageError, WeightsMissingError) as error:
        console.say(f"error: {error}")
        return EXIT_BAD_INPUT
    except ErrorBudgetExceeded as error:
        console.say(f"error: {error}")
        return EXIT_PROBLEM


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "verbose"):
        return run_handler(args.handler, args)
    console.setup(args.verbose)  # a verb that runs stages: one console line each, logs to a file
    try:
        return run_handler(args.handler, args)
    finally:
        console.teardown()


if __name__ == "__main__":
    sys.exit(main())
