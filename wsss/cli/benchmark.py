"""``wsss benchmark`` (and ``python jobs/benchmark.py``): every stage against a plain reference.

See ``wsss.benchmark.run`` for what is measured. ``--show`` prints saved results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from wsss.benchmark.common import Settings
from wsss.benchmark.report import log_run, report_text, show, write_json
from wsss.benchmark.run import STAGES, run_benchmark, selected_stages
from wsss.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROBLEM
from wsss.config import TrackingConfig, load_config


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="benchmark", description=__doc__.splitlines()[0]))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's flags (shared by ``jobs/benchmark.py`` and ``wsss benchmark``)."""
    parser.add_argument("stages", nargs="*", metavar="stage", help=f"any of {', '.join(STAGES)} (default: all that can run)")
    parser.add_argument("--images", type=int, default=None, help="synthetic images (default 64; quick 8)")
    parser.add_argument("--size", type=int, default=None, help="image side after decode (default 256; quick 64)")
    parser.add_argument("--root", default=None, help="benchmark on this Oxford-IIIT Pet root instead of a synthetic one")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--config", default=None, help="study config: its tracking section is used")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (sqlite:///...); default: the config's")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when there is one)")
    parser.add_argument("--workers", type=int, default=None, help="CPU workers for scaling runs (default: the cores)")
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds per stage), for tests")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="in-process only (no Ray)")
    parser.add_argument("--no-mlflow", dest="mlflow", action="store_false", help="do not log to MLflow")
    parser.add_argument("--scratch", default=None, help="keep the synthetic data, stores and runs here")
    parser.add_argument("--show", nargs="+", metavar="JSON", default=None,
                        help="print the tables of results saved with --out (measures nothing)")
    return parser


def add_parser(verbs) -> argparse.ArgumentParser:
    parser = verbs.add_parser("benchmark", help="time every stage against a plain reference")
    add_arguments(parser).set_defaults(handler=run)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings for the flags: quick sizes, the device, the cores, device defaults."""
    settings = Settings(quick=args.quick, ray=args.ray, mlflow=args.mlflow)
    if args.quick:
        settings.images, settings.size, settings.source_size = 8, 64, 64
        settings.model_images, settings.cam_batch, settings.batch_size = 4, 4, 4
        settings.scaling_rows = 8
        settings.sam2_images, settings.sam2_batch, settings.sam2_image_size = 2, 2, 256
        settings.train_options, settings.train_size = {"width": 0.125}, 64
        settings.train_batch, settings.train_steps = 4, 2
    settings.images = args.images or settings.images
    settings.size = args.size or settings.size
    settings.source_size = max(settings.source_size, settings.size)
    settings.device = _device(args.device)
    settings.workers = args.workers or len(os.sched_getaffinity(0))
    return settings.for_device()


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def tracking_config(args: argparse.Namespace) -> TrackingConfig:
    """The config's tracking section, the store overridden by --tracking-uri (artifacts beside it)."""
    tracking = load_config(args.config).tracking if args.config else TrackingConfig()
    if args.tracking_uri:
        update = {"tracking_uri": args.tracking_uri}
        if args.tracking_uri.startswith("sqlite:///"):
            update["artifact_location"] = str(Path(args.tracking_uri[len("sqlite:///"):]).parent / "artifacts")
        tracking = TrackingConfig(**{**tracking.model_dump(), **update})
    return tracking


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write JSON; log to MLflow. Exit 1 if a stage failed."""
    return run(build_parser().parse_args(argv), argv)


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """``main`` for already parsed arguments."""
    if args.show:
        return show(args.show)
    try:
        stages = selected_stages(args.stages, args.ray)
        tracking = tracking_config(args) if args.mlflow else None
    except ValueError as error:  # ConfigError is a ValueError
        print(f"benchmark: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = settings_from(args)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="wsss-benchmark-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        payload = run_benchmark(stages, settings, scratch, args.root)
        payload["command"] = ["jobs/benchmark.py", *(sys.argv[1:] if argv is None else argv)]
        text = report_text(payload)
        json_path = write_json(payload, args.out or scratch / "benchmark.json")
        if tracking is not None:
            payload["mlflow_run_id"] = log_run(payload, json_path, text, tracking)
            write_json(payload, json_path)
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print(text, flush=True)
    print(f"\nresults: {args.out or '(scratch, removed)'}", flush=True)
    return EXIT_PROBLEM if any("error" in row for row in payload["stages"]) else EXIT_OK
