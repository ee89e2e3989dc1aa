"""``wsss report``: the study's tables and figures regenerated from a sweep's MLflow runs."""

from __future__ import annotations

import argparse
import sys

from wsss.cli.common import EXIT_BAD_INPUT, EXIT_OK
from wsss.report.build import REPORT_ARTIFACT_PATH, build_report
from wsss.report.runs import ReportError


def cmd_report(args: argparse.Namespace) -> int:
    """Build the report; exit 2 (with the reason) when the runs cannot be found."""
    try:
        result = build_report(args.experiment, args.out, args.tracking_uri, args.parent,
                              log=not args.no_log, worst=args.worst, sample=args.sample)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"report for parent run {result['parent_run_id']}: {result['html']}")
    print(result["claim"])
    if result["logged"]:
        print(f"logged to the parent run's artifacts under {REPORT_ARTIFACT_PATH}/")
    return EXIT_OK


def add_parser(verbs) -> argparse.ArgumentParser:
    """``report --experiment NAME --out DIR [--tracking-uri URI] [--parent RUN_ID]``."""
    parser = verbs.add_parser("report", help="the study's tables and figures from a sweep's MLflow runs")
    parser.add_argument("--experiment", required=True, help="MLflow experiment (tracking.experiment)")
    parser.add_argument("--out", required=True, help="folder for index.html, tables and figures")
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, "
                                               "else sqlite:///mlflow/mlflow.db)")
    parser.add_argument("--parent", help="the sweep's parent run id (default: the newest finished)")
    parser.add_argument("--worst", type=int, default=4, help="worst test images per method (4)")
    parser.add_argument("--sample", type=int, default=4, help="fixed sample of test images (4)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")
    parser.set_defaults(handler=cmd_report)
    return parser
