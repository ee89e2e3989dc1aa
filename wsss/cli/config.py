"""``wsss config check|show``: validate a study config, or print it with every default."""

from __future__ import annotations

import argparse

import yaml

from wsss.cli.common import EXIT_OK
from wsss.config import StudyConfig, load_config


def cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: valid ({len(config.labelers)} labelers, model {config.train.model})")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    config = load_config(args.file) if args.file else StudyConfig()
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return EXIT_OK


def add_parser(verbs) -> None:
    config = verbs.add_parser("config", help="validate or show a study config")
    actions = config.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a YAML config")
    check.add_argument("file")
    check.set_defaults(handler=cmd_config_check)
    show = actions.add_parser("show", help="print a config with every default filled in")
    show.add_argument("file", nargs="?")
    show.set_defaults(handler=cmd_config_show)
