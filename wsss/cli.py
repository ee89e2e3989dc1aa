"""``wsss <verb>``: one parser for every verb; ``jobs/*.py`` call the same functions.

Exit codes: 0 success, 1 the work ran and found a problem (e.g. an unusable dataset),
2 bad input (config, paths, arguments) detected before any work.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from wsss.config import BORDER_POLICIES, ConfigError

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad input found before any work started (exit code 2)."""


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, sort_keys=False, default=str))


# ---- config ---------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from wsss.config import load_config

    config = load_config(args.file)
    print(f"{args.file}: valid ({len(config.labelers)} labelers, model {config.train.model})")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from wsss.config import StudyConfig, load_config

    config = load_config(args.file) if args.file else StudyConfig()
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return EXIT_OK


# ---- data -----------------------------------------------------------------------------------


def cmd_data_check(args: argparse.Namespace) -> int:
    from wsss.data.check import check_report, format_report
    from wsss.data.pets import index

    dataset = index(args.root, val_fraction=args.val_fraction, split_seed=args.split_seed)
    report = check_report(dataset, args.error_budget, progress=not args.json)
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return EXIT_OK if report["usable"] else EXIT_PROBLEM


def cmd_data_synth(args: argparse.Namespace) -> int:
    from wsss.data.synthetic import synthesize

    summary = synthesize(args.root, images=args.images, size=args.size, seed=args.seed,
                         progress=True)
    _print_json(summary)
    return EXIT_OK


# ---- evaluation -----------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from wsss.data.pets import index
    from wsss.evaluation import evaluate_folder

    records = index(args.root).split(args.split)
    result = evaluate_folder(args.pred, records, args.border_policy)
    if args.json:
        _print_json(result)
    else:
        for aggregation in ("micro", "per_image"):
            values = "  ".join(f"{k} {v:.4f}" for k, v in result[aggregation].items())
            print(f"{aggregation:>9}: {values}")
        print(f"{result['images']} images, border policy {result['border_policy']}")
    return EXIT_OK


# ---- sweep -----------------------------------------------------------------------------------


def cmd_sweep(args: argparse.Namespace) -> int:
    from wsss.config import load_config, parse_overrides
    from wsss.sweep import run_sweep
    from wsss.tracking import tracking_uri

    config = load_config(args.config, parse_overrides(args.set))
    result = run_sweep(config)
    print(f"\n## {config.name}: test metrics (micro) beside the study's\n")
    print(result["markdown"])
    for failure in result["failures"]:
        print(f"FAILED trial: {failure}", file=sys.stderr)
    uri = tracking_uri(config.tracking)
    where = "mlflow/serve.sh, then open http://127.0.0.1:5000" if uri.startswith("sqlite") else uri
    print(f"\nCompare the runs in the MLflow UI ({where}): experiment '{result['experiment']}', "
          f"parent run {result['parent_run_id']}.")
    return EXIT_PROBLEM if result["failures"] else EXIT_OK


# ---- parser ---------------------------------------------------------------------------------


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="dataset root in the Oxford-IIIT Pet layout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsss", description="Weakly supervised semantic segmentation on Ray.",
        epilog="Exit codes: 0 success, 1 the work found a problem, 2 bad input.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    config = verbs.add_parser("config", help="validate or show a study config")
    config_verbs = config.add_subparsers(dest="action", required=True)
    check = config_verbs.add_parser("check", help="validate a YAML config")
    check.add_argument("file")
    check.set_defaults(handler=cmd_config_check)
    show = config_verbs.add_parser("show", help="print a config with every default filled in")
    show.add_argument("file", nargs="?")
    show.set_defaults(handler=cmd_config_show)

    data = verbs.add_parser("data", help="check a dataset root or write a synthetic one")
    data_verbs = data.add_subparsers(dest="action", required=True)
    data_check = data_verbs.add_parser("check", help="decode everything and report problems")
    _add_root(data_check)
    data_check.add_argument("--json", action="store_true", help="print one JSON object")
    data_check.add_argument("--error-budget", type=float, default=0.01,
                            help="fraction of images allowed to fail (default 0.01)")
    data_check.add_argument("--val-fraction", type=float, default=0.2)
    data_check.add_argument("--split-seed", type=int, default=0)
    data_check.set_defaults(handler=cmd_data_check)
    synth = data_verbs.add_parser("synth", help="write a synthetic dataset in the same layout")
    _add_root(synth)
    synth.add_argument("--images", type=int, default=200)
    synth.add_argument("--size", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=cmd_data_synth)

    evaluate = verbs.add_parser("eval", help="score predicted masks against the ground truth")
    evaluate.add_argument("--pred", required=True, help="folder of <image_id>.png masks")
    _add_root(evaluate)
    evaluate.add_argument("--split", default="test", help="train | val | test | trainval")
    evaluate.add_argument("--border-policy", default="ignore", choices=BORDER_POLICIES)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)

    from wsss.classification import add_classify_parser
    from wsss.predict import add_predict_parser
    from wsss.pseudo import add_pseudo_parsers
    from wsss.report import add_report_parser
    from wsss.training_cli import add_train_parser

    add_classify_parser(verbs)
    add_pseudo_parsers(verbs)
    add_train_parser(verbs)
    add_predict_parser(verbs)
    add_report_parser(verbs)

    sweep = verbs.add_parser("sweep", help="run a whole study: classifier, mask sets, Tune trials")
    sweep.add_argument("--config", required=True)
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. train.epochs=1")
    sweep.set_defaults(handler=cmd_sweep)

    from wsss.benchmark import add_arguments as add_benchmark_arguments
    from wsss.benchmark import run as run_benchmark

    benchmark = verbs.add_parser("benchmark", help="time every stage against a plain reference")
    add_benchmark_arguments(benchmark).set_defaults(handler=run_benchmark)
    return parser


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a verb, turning the project's input errors into a message and exit code 2."""
    from wsss.data.pets import DatasetMissingError
    from wsss.data.quarantine import ErrorBudgetExceeded
    from wsss.evaluation import PredictionError
    from wsss.models.classifier import WeightsMissingError

    try:
        return handler(args)
    except (ConfigError, DatasetMissingError, PredictionError, UsageError, WeightsMissingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ErrorBudgetExceeded as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEM


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_handler(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
