"""``python jobs/benchmark.py [stage ...]``: every stage's throughput, the project's path against
a plain reference, on the same images in one run; JSON, an MLflow run, a markdown table.

Stages: decode, cam, gradcam, gradcampp, grabcut, slic, mix, sam2, train, infer, pseudo (the
whole Ray pipeline). CPU stages report images/s with all workers (and per core), the serial
reference, the scaling from 1 to all workers through Ray Data, and the floor (the bare library
call x cores); model stages report images/s per GPU (or per core: one thread on CPU). Each fast path
records its predicted and its measured gain. ``--no-ray`` measures in-process only (no scaling,
no pipeline, no Ray Train); ``--quick`` is a tiny run for tests. A stage that fails is recorded
with its error and the others still run (exit code 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

from wsss.benchmark_common import Settings

STAGES = ("decode", "cam", "gradcam", "gradcampp", "grabcut", "slic", "mix", "sam2", "train",
          "infer", "pseudo")
RAY_ONLY = ("pseudo",)
CAM_STAGES = ("cam", "gradcam", "gradcampp")


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


def selected_stages(names: list[str], ray: bool) -> list[str]:
    """The named stages in canonical order (all runnable ones by default); unknown names raise."""
    unknown = sorted(set(names) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    if not ray and set(names) & set(RAY_ONLY):
        raise ValueError(f"stage(s) {', '.join(set(names) & set(RAY_ONLY))} need Ray; drop --no-ray")
    wanted = set(names) or {s for s in STAGES if ray or s not in RAY_ONLY}
    return [stage for stage in STAGES if stage in wanted]


def run_stage(stage: str, work: Any, settings: Settings) -> dict[str, Any]:
    """One stage's result (or its error: the other stages still run)."""
    from wsss import benchmark_cpu, benchmark_models, benchmark_pipeline, benchmark_train

    runners = {"decode": benchmark_cpu.decode_stage_bench, "grabcut": benchmark_cpu.grabcut_bench,
               "slic": benchmark_cpu.slic_bench, "mix": benchmark_cpu.mix_bench,
               "sam2": benchmark_models.sam2_stage, "train": benchmark_train.train_stage,
               "infer": benchmark_models.infer_stage, "pseudo": benchmark_pipeline.pseudo_bench}
    started = time.perf_counter()
    print(f"benchmark: {stage} ...", file=sys.stderr, flush=True)
    try:
        if stage in CAM_STAGES:
            result = benchmark_models.cam_stage(stage, work, settings)
        else:
            result = runners[stage](work, settings)
    except Exception as error:  # noqa: BLE001 - recorded; the other stages still run
        traceback.print_exc()
        result = {"stage": stage, "error": f"{type(error).__name__}: {error}"}
    result["seconds"] = time.perf_counter() - started
    return result


@contextmanager
def single_thread(enabled: bool) -> Iterator[None]:
    """One thread per process for torch and OpenCV while measuring on CPU: rates are per core,
    as in Ray's workers (Ray sets OMP_NUM_THREADS=1 for a 1-CPU task); on a shared 2-core
    machine two intra-op threads made the CAM stages 10-20x slower than one."""
    import cv2
    import torch

    saved = torch.get_num_threads(), cv2.getNumThreads()
    if enabled:
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])


def run_benchmark(stages: list[str], settings: Settings, scratch: Path, root: str | None = None) -> dict:
    """Every selected stage on one workload; the payload written as JSON and logged."""
    from wsss.benchmark_common import prepare_workload
    from wsss.benchmark_models import cam_fast_paths
    from wsss.benchmark_report import machine_info

    with single_thread(not settings.device.startswith("cuda")):
        work = prepare_workload(settings, scratch, root)
        results = {stage: run_stage(stage, work, settings) for stage in stages}
        fast = [path for result in results.values() for path in result.pop("fast_paths", [])]
        if all(s in results and "error" not in results[s] for s in CAM_STAGES):
            try:
                fast += cam_fast_paths(work, settings, results)
            except Exception as error:  # noqa: BLE001 - a report without it beats no report
                traceback.print_exc()
                fast.append({"fast_path": "three CAM kinds in one pass", "error": str(error)})
    return {"machine": machine_info(settings), "settings": asdict(settings),
            "images": len(work.image_ids), "stages": list(results.values()), "fast_paths": fast,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def tracking_config(args: argparse.Namespace) -> Any:
    """The config's tracking section, the store overridden by --tracking-uri (artifacts beside it)."""
    from wsss.config import TrackingConfig, load_config

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
    from wsss.benchmark_report import log_run, report_text, show, write_json

    if args.show:
        return show(args.show)
    try:
        stages = selected_stages(args.stages, args.ray)
        tracking = tracking_config(args) if args.mlflow else None
    except ValueError as error:  # ConfigError is a ValueError
        print(f"benchmark: {error}", file=sys.stderr)
        return 2
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
    return 1 if any("error" in row for row in payload["stages"]) else 0
