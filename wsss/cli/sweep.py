"""``wsss sweep`` (and ``python jobs/sweep.py``): a whole study, each stage reused when done."""

from __future__ import annotations

import argparse
from typing import Any

from wsss import console
from wsss.cli.common import EXIT_OK, EXIT_PROBLEM, add_config_arguments, study_config
from wsss.config import StudyConfig
from wsss.sweep.progress import stages_line
from wsss.sweep.run import run_sweep
from wsss.tracking import tracking_uri


def cmd_sweep(args: argparse.Namespace) -> int:
    config = study_config(args)
    result = run_sweep(config)
    show_result(config, result)
    return EXIT_PROBLEM if result["failures"] else EXIT_OK


def show_result(config: StudyConfig, result: dict[str, Any]) -> None:
    """The sweep's final summary: the table, the best model, how long each stage took, failed
    trials, and where to compare the runs."""
    if result["scored"]:
        console.echo(f"\n{config.name}: each run's test score, its labels' own and the study's")
    else:
        console.echo(f"\n{config.name}: no ground truth in the data, so no test scores")
    console.echo(result["console"])
    console.echo("(every metric of every run: summary.md on the parent run, or `wsss report`)")
    if result["best_model"]:
        best = result["best_model"]
        console.echo(f"\nRegistered model: models:/{best['model']}@best\n"
                     f"(version {best['version']}, run {best['run']}, {best['metric']} {best['value']:.4f}).")
    console.echo(f"\n{stages_line(result['stage_seconds'])}")
    for failure in result["failures"]:
        console.say(f"FAILED trial: {failure}")
    uri = tracking_uri(config.tracking)
    where = "mlflow/serve.sh, then open http://127.0.0.1:5000" if uri.startswith("sqlite") else uri
    console.echo(f"\nCompare the runs in the MLflow UI ({where}):\n"
                 f"experiment '{result['experiment']}', parent run {result['parent_run_id']}.")


def add_parser(verbs) -> argparse.ArgumentParser:
    parser = verbs.add_parser("sweep", help="run a whole study: classifier, mask sets, Tune trials")
    add_config_arguments(parser, "train.epochs=1")
    parser.set_defaults(handler=cmd_sweep)
    return parser
