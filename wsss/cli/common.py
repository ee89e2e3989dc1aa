"""What every verb shares: exit codes, the config arguments, JSON output."""

from __future__ import annotations

import argparse
import json
import math

from wsss.config import StudyConfig, load_config, parse_overrides
from wsss.data.index import FORMATS

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad input found before any work started (exit code 2)."""


def print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, sort_keys=False, default=str))


def add_config_arguments(parser: argparse.ArgumentParser, example: str = "train.epochs=1") -> None:
    """``--config C`` and repeatable ``--set dotted.key=value`` overrides."""
    parser.add_argument("--config", required=True, help="study config (YAML)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config field, e.g. {example} (repeatable)")
    parser.add_argument("--verbose", action="store_true",
                        help="show Ray's, MLflow's and the workers' logs here too (they always go "
                             "to the log file)")


def study_config(args: argparse.Namespace) -> StudyConfig:
    """The ``--config`` file with the ``--set`` overrides applied, validated."""
    return load_config(args.config, parse_overrides(args.set, "--set"))


def add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="dataset root (see --format)")


def add_format(parser: argparse.ArgumentParser) -> None:
    """``--format`` and ``--manifest``: how a ``--root`` is laid out (as data.format)."""
    parser.add_argument("--format", default="oxford-pets", choices=FORMATS,
                        help="oxford-pets (default), imagefolder, csv, coco or voc")
    parser.add_argument("--manifest", help="csv: labels.csv, coco: annotations.json by default")


def class_scores_lines(result: dict) -> list[str]:
    """Console lines of a class-map score (``SegmentationMeter.result(classes)``): mIoU, the IoU
    of each class that occurs (classes neither in the truth nor predicted have none), any-class
    scores."""
    present = "  ".join(f"{name} {value:.4f}" for name, value in result["class_iou"].items()
                        if not math.isnan(value))
    return [f"mIoU {result['miou']:.4f}  pixel accuracy {result['pixel_accuracy']:.4f}", present,
            "any class: " + "  ".join(f"{k} {v:.4f}" for k, v in result["micro"].items())]

