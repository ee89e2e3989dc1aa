"""``wsss benchmark`` (and ``python jobs/benchmark.py``): every stage against a plain reference.

See ``wsss.benchmark.run`` for what is measured. ``--show`` prints saved results.
``--scaling 1000,4000,16000`` measures how cost grows with work instead
(``wsss.benchmark.scaling``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from wsss import console
from wsss.benchmark.common import Settings
from wsss.benchmark.report import (
    log_run,
    log_scaling_run,
    machine_info,
    report_text,
    scaling_text,
    show,
    write_json,
)
from wsss.benchmark.run import STAGES, run_benchmark, selected_stages
from wsss.benchmark.scaling import run_scaling
from wsss.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROBLEM
from wsss.config import TrackingConfig, load_config
from wsss.storage import write_text

SCALING_OUT = "benchmark-scaling"  # the scaling run's results and cached sets, without --out


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="benchmark", description=__doc__.splitlines()[0]))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's flags (shared by ``jobs/benchmark.py`` and ``wsss benchmark``)."""
    parser.add_argument("stages", nargs="*", metavar="stage",
                        help=f"any of {', '.join(STAGES)} (default: all that can run)")
    parser.add_argument("--images", type=int, default=None, help="synthetic images (default 64; quick 8)")
    parser.add_argument("--size", type=int, default=None, help="image side after decode (default 256; quick 64)")
    parser.add_argument("--root", default=None,
                        help="benchmark on this Oxford-IIIT Pet root instead of a synthetic one")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--config", default=None, help="study config: its tracking section is used")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (sqlite:///...); default: the config's")
    parser.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when there is one)")
    parser.add_argument("--workers", type=int, default=None, help="CPU workers for scaling runs (default: the cores)")
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds per stage), for tests")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="in-process only (no Ray)")
    parser.add_argument("--no-mlflow", dest="mlflow", action="store_false", help="do not log to MLflow")
    parser.add_argument("--scratch", default=None, help="keep the synthetic data, stores and runs here")
    parser.add_argument("--rows", type=int, default=None, metavar="N",
                        help="rows per Ray run of a CPU stage, the images repeated (default 1024): more "
                             "rows measure the steady state a full dataset runs in")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help="CPU stages: repeat the Ray runs and the bare references N times, "
                             "interleaved, and sum them (default 2), so a slow spell of the machine "
                             "hits all alike")
    parser.add_argument("--scaling", default=None, metavar="N,N,...",
                        help="scaling run: the mask pipeline on synthetic sets of these image counts "
                             "(e.g. 1000,4000,16000); --out is then a folder (or a .json file)")
    parser.add_argument("--scaling-size", type=int, default=64, help="scaling run: image side (default 64)")
    parser.add_argument("--scaling-train", default=None, metavar="N,N",
                        help="scaling run: counts that training runs on (default: the two smallest; none: no training)")
    parser.add_argument("--scaling-sweep", default=None, metavar="N,N",
                        help="scaling run: counts that a whole sweep runs on (classifier, CAM and GrabCut "
                             "sets, three one-epoch trials, MLflow); default none")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                        help="scaling run: skip the warm-up runs that start Ray's workers, Ray Train and "
                             "Tune first (faster; the first row then carries their start-up)")
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
    settings.scaling_rows = args.rows or settings.scaling_rows
    settings.rounds = args.rounds or settings.rounds
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
        scaling_counts(args)  # bad counts: exit 2 before any work
        for flag in ("rows", "rounds"):
            if getattr(args, flag) is not None and getattr(args, flag) < 1:
                raise ValueError(f"--{flag} must be at least 1 (got {getattr(args, flag)})")
        tracking = tracking_config(args) if args.mlflow else None
    except ValueError as error:  # ConfigError is a ValueError
        print(f"benchmark: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = settings_from(args)
    if args.scaling:
        return run_scaling_command(args, settings, tracking, argv)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="wsss-benchmark-"))
    scratch.mkdir(parents=True, exist_ok=True)
    owns_console = console.log_path() is None  # jobs/benchmark.py: no `wsss` main set it up
    if owns_console:  # Ray's and the workers' output to a log file; a line per stage here
        console.setup()
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
        if owns_console:
            console.teardown()
    print(text, flush=True)
    print(f"\nresults: {args.out or '(scratch, removed)'}", flush=True)
    return EXIT_PROBLEM if any("error" in row for row in payload["stages"]) else EXIT_OK


def parse_counts(text: str | None, flag: str) -> list[int]:
    """``"1000,4000"`` -> [1000, 4000]; ValueError naming the flag otherwise."""
    try:
        counts = [int(part) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes image counts separated by commas, got {text!r}") from None
    if any(count < 2 for count in counts):
        raise ValueError(f"{flag}: every count must be at least 2, got {text!r}")
    return counts


def scaling_counts(args: argparse.Namespace) -> tuple[list[int], list[int], list[int]] | None:
    """(pipeline, training, sweep counts) of a scaling run; None for the stage benchmark."""
    if not args.scaling:
        return None
    if args.stages or not args.ray:
        raise ValueError("--scaling runs the whole pipeline through Ray: drop the stage names and --no-ray")
    counts = parse_counts(args.scaling, "--scaling")
    sweep = parse_counts(args.scaling_sweep, "--scaling-sweep") if args.scaling_sweep else []
    if args.scaling_train == "none":
        return counts, [], sweep
    train = parse_counts(args.scaling_train, "--scaling-train") if args.scaling_train else sorted(counts)[:2]
    return counts, train, sweep


def scaling_outputs(out: str | None) -> tuple[Path, Path]:
    """(JSON, markdown) paths: ``--out`` a .json file or a folder (default ``benchmark-scaling``)."""
    if out and out.endswith(".json"):
        return Path(out), Path(out).with_suffix(".md")
    folder = Path(out or SCALING_OUT)
    return folder / "scaling.json", folder / "scaling.md"


def run_scaling_command(args: argparse.Namespace, settings: Settings, tracking: TrackingConfig | None,
                        argv: list[str] | None) -> int:
    """The scaling run: synthetic sets cached under --scratch (else beside the results), the
    measured runs' stores in a temporary folder; JSON and markdown written, the table printed."""
    counts, train, sweep = scaling_counts(args)
    json_path, markdown_path = scaling_outputs(args.out)
    cache = Path(args.scratch) if args.scratch else json_path.parent / "scaling-data"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wsss-scaling-", dir=cache))
    owns_console = console.log_path() is None  # jobs/benchmark.py: no `wsss` main set it up
    if owns_console:  # Ray's, Train's and the workers' output to a log file; one line per run here
        console.setup()
    try:
        payload = run_scaling(counts, train, settings, args.scaling_size, cache, work, sweep,
                              warm_up=args.warm_up)
        payload.update(machine=machine_info(settings), settings=asdict(settings),
                       command=["jobs/benchmark.py", *(sys.argv[1:] if argv is None else argv)])
        text = write_scaling(payload, json_path, markdown_path, tracking)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if owns_console:
            console.teardown()
    print(text, flush=True)
    print(f"\nresults: {json_path} and {markdown_path}; synthetic sets kept in {cache}", flush=True)
    return EXIT_OK


def write_scaling(payload: dict, json_path: Path, markdown_path: Path, tracking: TrackingConfig | None) -> str:
    """JSON and markdown written (and an MLflow run where tracking is on); the markdown text."""
    text = scaling_text(payload)
    write_json(payload, json_path)
    write_text(markdown_path, text + "\n")
    if tracking is not None:
        payload["mlflow_run_id"] = log_scaling_run(payload, json_path, text, tracking)
        write_json(payload, json_path)
    return text
