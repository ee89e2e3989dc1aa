"""``wsss classify``: train (or reuse) the breed classifier the CAMs read."""

from __future__ import annotations

import argparse
import json

from wsss import console
from wsss.cli.common import EXIT_OK, add_config_arguments, study_config
from wsss.train.classifier import run_classifier


def cmd_classify(args: argparse.Namespace) -> int:
    """Run ``run_classifier``; print the checkpoint path (or the JSON summary)."""
    summary = run_classifier(study_config(args))
    if args.json:
        console.echo(json.dumps(summary, indent=2))
    else:
        console.say(f"test accuracy {summary['test_accuracy']}, val accuracy "
                    f"{summary['val_accuracy']}")
        console.echo(summary["checkpoint"])
    return EXIT_OK


def add_parser(verbs) -> argparse.ArgumentParser:
    """``classify --config C [--set key=value ...] [--json]``."""
    parser = verbs.add_parser("classify", help="train (or reuse) the breed classifier")
    add_config_arguments(parser, "classifier.epochs=3")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=cmd_classify)
    return parser
