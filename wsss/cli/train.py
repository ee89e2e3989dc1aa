"""``wsss train`` (and ``python jobs/train.py``): a segmentation model on Ray Train."""

from __future__ import annotations

import argparse
import json

from wsss import console
from wsss.cli.common import EXIT_OK, add_config_arguments
from wsss.config import ConfigError, StudyConfig, load_config, parse_overrides
from wsss.train.labels import parse_labels
from wsss.train.segmentation import train_segmentation


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--config C [--labels gt|MASKSET|KEY:EPOCHS,...] [--model NAME] [--set k=v ...]``."""
    add_config_arguments(parser, "train.epochs=3")
    parser.add_argument("--labels", help="gt, a mask set id, or a schedule such as "
                                         "raw_box:20,mix:20 (overrides train.labels)")
    parser.add_argument("--model", help="segmentation model (overrides train.model); "
                                        "see wsss.models.segmentation.list_models()")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="model constructor option, e.g. width=0.25 for a narrow UNet")
    parser.add_argument("--name", help="Train run name; the same name and storage resume a run")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def add_parser(verbs) -> argparse.ArgumentParser:
    """Add ``train`` to a subparsers object."""
    parser = verbs.add_parser("train", help="train a segmentation model on Ray Train")
    add_train_arguments(parser)
    parser.set_defaults(handler=cmd_train)
    return parser


def load_train_config(args: argparse.Namespace) -> StudyConfig:
    """The study config with ``--set``, ``--labels`` and ``--model`` applied, validated."""
    overrides = parse_overrides(args.set, "--set")
    if args.labels:
        try:
            overrides["train.labels"] = parse_labels(args.labels)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if args.model or args.model_option:
        configured = load_config(args.config, overrides).train
        options = parse_overrides(args.model_option, "--model-option") if args.model_option else None
        model = configured.model_spec(args.model, options if options is not None
                                      else overrides.get("train.model_options"))
        overrides["train.model"], overrides["train.model_options"] = model.name, dict(model.options)
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    """Train, log to MLflow, print the tested checkpoint (or the JSON summary)."""
    config = load_train_config(args)  # errors (config, weights, dataset): wsss.cli.main.run_handler
    summary = train_segmentation(config, name=args.name)  # --model-option is in the config
    if args.json:
        console.echo(json.dumps(summary, indent=2))
    else:
        console.say(f"{summary['headline'] or 'not tested'} ({summary['test_images']} images, epoch "
                    f"{summary['tested_epoch']}); MLflow run {summary['run_id']}")
        console.echo(summary["checkpoint"])
    return EXIT_OK
