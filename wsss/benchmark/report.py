"""The benchmark's outputs: the machine, the markdown tables, the JSON file, the MLflow run."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from wsss import tracking as mlflow_tracking
from wsss.storage import write_text

# Training and SAM2-encoder images/s an H100 could reach on arithmetic alone (bf16 tensor-core
# FLOP/s over the model's FLOPs per image): DeepLabV3-ResNet50 training at 256 px, Hiera-small
# at 1024 px. Measured rates are shown as a share of these.
H100_CEILINGS = {"train": 3000, "sam2_encoder": 2200}


def machine_info(settings: Any) -> dict[str, Any]:
    """CPU model, cores, GPU, library versions."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for package in ("torch", "ray", "mlflow", "opencv-python-headless", "scikit-image", "sam2", "grad-cam"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    gpu = torch.cuda.get_device_name(0) if settings.device.startswith("cuda") else None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpu": gpu, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def _number(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def format_table(payload: dict) -> str:
    """The markdown report: machine, one row per stage, then the fast paths."""
    machine = payload["machine"]
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores, GPU: {machine['gpu'] or 'none'}; "
             f"torch {machine['versions']['torch']}, ray {machine['versions']['ray']}; "
             f"{payload['images']} images at {payload['settings']['size']} px",
             "", "| stage | path | reference | images/s path | images/s reference | ratio | workers | scaling |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in payload["stages"]:
        if "error" in row:
            lines.append(f"| {row['stage']} | error: {row['error'][:80]} | | | | | | |")
            continue
        path = _number(row["path_images_per_s"])
        if row["unit"] == "per core" and row["workers"] > 1:
            path += f" ({_number(row['path_images_per_s_per_worker'])}/core)"
        lines.append(f"| {row['stage']} | {row['path']} | {row['reference']} | {path} | "
                     f"{_number(row['reference_images_per_s'])} | {_number(row['ratio'], 2)} | "
                     f"{row['workers']} | {_number(row['scaling'], 2)} |")
    if payload["fast_paths"]:
        lines += ["", "| fast path | predicted gain | measured gain | kept | notes |",
                  "| --- | --- | --- | --- | --- |"]
        for item in payload["fast_paths"]:
            notes = {k: v for k, v in item.items() if k not in
                     ("fast_path", "predicted_gain", "measured_gain", "prediction", "kept")}
            lines.append(f"| {item['fast_path']} | {_number(item.get('predicted_gain'), 2)}x | "
                         f"{_number(item.get('measured_gain'), 2)}x | {item.get('kept', '-')} | "
                         f"{_compact(notes)} |")
    return "\n".join(lines)


def _compact(notes: dict) -> str:
    def short(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        return value

    return json.dumps(short(notes))[1:-1].replace("|", "/") if notes else ""


def pipeline_table(payload: dict) -> str:
    """CPU stages through the pipeline against the bare library calls and the scaling target."""
    rows = [r for r in payload["stages"] if "pipeline_over_bare" in r.get("details", {})]
    if not rows:
        return ""
    lines = ["| stage | bare s/image | pipeline s/image/worker | pipeline / bare | bare on all cores "
             "s/image/process | pipeline / bare on all cores | scaling 1 -> all (by round) | the bare call's own "
             "scaling | target (0.9 x workers) | where the cores went (all workers) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        details = row["details"]
        lines.append(f"| {row['stage']} | {_number(details['bare_seconds_per_image'], 4)} | "
                     f"{_number(details['pipeline_seconds_per_image_per_worker'], 4)} | "
                     f"{_number(details['pipeline_over_bare'], 2)} | "
                     f"{_number(details.get('bare_parallel_seconds_per_image'), 4)} | "
                     f"{_number(details.get('pipeline_over_parallel_bare'), 2)} | "
                     f"{_number(row['scaling'], 2)}{scaling_by_round(details)} | "
                     f"{_number(details.get('machine_scaling'), 2)} | "
                     f"{_number(details['target_ratio'], 2)} | {cores_spent(details)} |")
    return "\n".join(lines)


def scaling_by_round(details: dict) -> str:
    """`` (r1, r2, ...)``: the scaling in each interleaved round (its spread is the run's noise)."""
    runs = details.get("ray", {})
    one, most = runs.get("1", {}), runs.get(str(max((int(k) for k in runs), default=0)), {})
    pairs = list(zip(one.get("rounds_images_per_s", []), most.get("rounds_images_per_s", [])))
    if len(pairs) < 2:
        return ""
    return " (" + ", ".join(f"{m / o:.2f}" for o, m in pairs) + ")"


def cores_spent(details: dict) -> str:
    """Shares of the all-worker run's core-seconds: the stage's own work, the rest of the
    workers' CPU (Ray's per-task work), the driver, Ray's system processes, idle."""
    runs = details.get("ray", {})
    best = runs.get(str(max((int(k) for k in runs), default=0)), {})
    cpu = best.get("cpu_seconds")
    if not cpu:
        return "-"
    total = sum(cpu.values()) + best["idle_core_seconds"]
    # the stage's seconds are its tasks' wall time: on cores shared with other work they exceed
    # the CPU the workers got, and the stage's share is then all of the workers' CPU
    stage = min(best["busy_seconds"], cpu["workers"])
    shares = {"stage": stage, "workers' Ray overhead": cpu["workers"] - stage,
              "driver": cpu["driver"], "Ray system": cpu["ray_system"], "idle": best["idle_core_seconds"]}
    return ", ".join(f"{name} {100 * value / total:.0f}%" for name, value in shares.items())


TRIAL_OVERHEAD_TARGET = 3.0  # seconds a trial may cost beyond its epochs and test
ONE_WORKER_TARGET = 0.9  # one training worker against one plain process


def training_table(payload: dict) -> str:
    """Training on CPU: each way wsss trains against plain PyTorch on the same cores, and the
    seconds a sweep trial costs beyond its epochs and test, each beside its target."""
    row = next((r for r in payload["stages"] if r["stage"] == "train" and "one_worker" in r.get("details", {})),
               None)
    if row is None:
        return ""
    details, plain = row["details"], row["reference_images_per_s"]
    lines = ["| training | images/s | reference | images/s | ratio | target |",
             "| --- | --- | --- | --- | --- | --- |"]
    names = {"auto": "1 worker in the trial's process (trainer: auto)", "ray_train": "1 worker in Ray Train"}
    for trainer, one in details["one_worker"].items():
        lines.append(f"| {names.get(trainer, trainer)} | {_number(one['images_per_s'])} | plain loop, 1 process | "
                     f"{_number(plain)} | {_number(one['over_plain'], 2)} | {ONE_WORKER_TARGET} |")
    if "ddp" in details:
        ddp = details["ddp"]
        lines.append(f"| {ddp['workers']} workers in Ray Train (DDP) | {_number(ddp['images_per_s'])} | "
                     f"{ddp['workers']} plain processes at once | {_number(ddp['plain_processes_images_per_s'])} | "
                     f"{_number(ddp['over_plain'], 2)} | - |")
    lines += ["", "| one sweep trial, 1 epoch | seconds beyond its epochs and test | target |", "| --- | --- | --- |"]
    for trainer, seconds in details.get("trial_overhead_seconds", {}).items():
        lines.append(f"| {names.get(trainer, trainer)} | {_number(seconds)} | {TRIAL_OVERHEAD_TARGET:g} |")
    return "\n".join(lines)


def report_text(payload: dict) -> str:
    """Everything printed at the end: the stage table, fast paths, pipeline vs bare calls,
    training against plain PyTorch."""
    parts = [format_table(payload), pipeline_table(payload), training_table(payload), ceilings_table(payload)]
    return "\n\n".join(part for part in parts if part)


def ceilings_table(payload: dict) -> str:
    """Where a GPU ran: measured rates next to the H100's arithmetic ceilings."""
    if not payload["machine"].get("gpu"):
        return ""
    rows = []
    for row in payload["stages"]:
        details = row.get("details", {})
        if row["stage"] == "sam2" and "encoder_images_per_s_path" in details:
            best = max(v for k, v in details.items() if k.startswith("encoder_images_per_s_")
                       and k != "encoder_images_per_s_reference" and v is not None)
            rows.append((f"SAM2-{details.get('model')} encoder, {details.get('image_size', 1024)} px",
                         best, H100_CEILINGS["sam2_encoder"]))
        if row["stage"] == "train" and "error" not in row:
            rows.append((f"{details.get('model', 'model')} training, {details.get('image_size')} px",
                         row["path_images_per_s"], H100_CEILINGS["train"]))
    lines = ["| on the GPU | images/s measured | H100 ceiling (arithmetic) | share |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {_number(value)} | {ceiling} | {_number(100 * value / ceiling)}% |"
              for name, value, ceiling in rows]
    return "\n".join(lines) if rows else ""


def scaling_text(payload: dict) -> str:
    """The scaling run's table (one row per stage and count) and its flatness verdicts."""
    lines = [f"Scaling: {payload['size']} px (files {payload['source_size']} px), labelers "
             f"{', '.join(payload['labelers'])}; training {payload['train_model']}",
             "", "| stage | images | seconds | ms/image | driver own MB (growth) | driver RSS MB (growth) | "
             "workers peak MB | spilled MB | store MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in payload["rows"]:
        lines.append(f"| {row['stage']} | {row['images']} | {_number(row['seconds'])} | "
                     f"{_number(row['ms_per_image'], 2)} | {_number(row['driver_private_peak_mb'], 0)} "
                     f"(+{_number(row['driver_private_growth_mb'], 0)}) | {_number(row['driver_peak_mb'], 0)} "
                     f"(+{_number(row['driver_growth_mb'], 0)}) | {_number(row['workers_peak_mb'], 0)} | "
                     f"{_number(row['spilled_mb'], 0) if row['spilled_mb'] is not None else 'unknown'} | "
                     f"{_number(row['store_mb'])} |")
    if payload["flatness"]:
        lines += ["", "| stage | counts | ms/image ratio (largest / smallest) | driver own growth MB "
                  "(smallest -> largest) | KB per extra image (own; RSS) | verdict |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for stage, flat in payload["flatness"].items():
            verdict = ", ".join([f"cost {'flat' if flat['cost_flat'] else 'GROWS'}",
                                 f"driver {'flat' if flat['driver_flat'] else 'GROWS'}"])
            lines.append(f"| {stage} | {flat['smallest']} -> {flat['largest']} | "
                         f"{_number(flat['ms_per_image_ratio'], 2)} | "
                         f"{_number(flat['driver_growth_mb_smallest'], 0)} -> "
                         f"{_number(flat['driver_growth_mb_largest'], 0)} | "
                         f"{_number(flat['driver_growth_kb_per_extra_image'], 2)}; "
                         f"{_number(flat.get('driver_rss_growth_kb_per_extra_image'), 2)} | {verdict} |")
    return "\n".join(lines)


def any_report_text(payload: dict) -> str:
    """The tables of a saved result: a scaling run's or the stage benchmark's."""
    return scaling_text(payload) if payload.get("kind") == "scaling" else report_text(payload)


def show(paths: list[str]) -> int:
    """Print the tables of saved benchmark JSON files (``--show``); 2 when one is unreadable."""
    import sys

    for path in paths:
        try:
            payload = json.loads(Path(path).read_text())
            text = any_report_text(payload)
        except (OSError, ValueError, KeyError) as error:
            print(f"benchmark --show {path}: not a benchmark result ({error})", file=sys.stderr)
            return 2
        print(f"{text}\n\ncommand: {' '.join(payload.get('command', []))} ({payload.get('created')})\n")
    return 0


def finite(value: Any) -> Any:
    """NaN and infinities -> None, recursively, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(finite(v) for v in value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return finite(value.item())
    return value


def write_json(payload: dict, path: str | os.PathLike) -> Path:
    """Write the payload whole or not at all."""
    write_text(path, json.dumps(finite(payload), indent=2, allow_nan=False) + "\n")
    return Path(path)


def stage_metrics(payload: dict) -> dict[str, float]:
    """``<stage>_path_images_per_s``, ``_reference_images_per_s``, ``_ratio``, ``_scaling``."""
    metrics = {}
    for row in payload["stages"]:
        for key in ("path_images_per_s", "reference_images_per_s", "ratio", "scaling",
                    "floor_images_per_s", "path_images_per_s_per_worker"):
            value = row.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics[f"{row['stage']}_{key}"] = float(value)
    for index, item in enumerate(payload["fast_paths"]):
        value = item.get("measured_gain")
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics[f"fast_path_{index}_measured_gain"] = float(value)
    return metrics


def scaling_metrics(payload: dict) -> dict[str, float]:
    """``<stage>_<images>_<field>`` for every number of every row, and the flatness ratios."""
    metrics = {}
    for row in payload["rows"]:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                metrics[f"{row['stage']}_{row['images']}_{key}"] = float(value)
    for stage, flat in payload["flatness"].items():
        metrics[f"{stage}_ms_per_image_ratio"] = float(flat["ms_per_image_ratio"])
        metrics[f"{stage}_driver_growth_kb_per_extra_image"] = float(flat["driver_growth_kb_per_extra_image"])
    return metrics


def log_scaling_run(payload: dict, json_path: Path, text: str, tracking: Any) -> str:
    """One MLflow run tagged stage=benchmark, kind=scaling: the rows as metrics, JSON and table."""
    import mlflow

    mlflow_tracking.configure(tracking)
    tags = {"stage": "benchmark", "kind": "scaling", "cpu": payload["machine"]["cpu"],
            "gpu": str(payload["machine"]["gpu"])}
    params = {"counts": ",".join(map(str, payload["counts"])), "scaling_size": payload["size"],
              "train_counts": ",".join(map(str, payload["train_counts"])), **payload["settings"]}
    with mlflow_tracking.run("benchmark-scaling", tags=tags, params=params, random_weights=True) as active:
        mlflow.log_metrics(scaling_metrics(payload))
        mlflow.log_artifact(str(json_path))
        mlflow.log_text(text, "scaling.md")
    return active.info.run_id


def log_run(payload: dict, json_path: Path, text: str, tracking: Any) -> str:
    """One MLflow run tagged stage=benchmark: metrics per stage, the JSON and table as artifacts."""
    import mlflow

    mlflow_tracking.configure(tracking)
    settings = payload["settings"]
    tags = {"stage": "benchmark", "device": settings["device"],
            "gpu": str(payload["machine"]["gpu"]), "cpu": payload["machine"]["cpu"]}
    params = {**settings, "stages": ",".join(row["stage"] for row in payload["stages"]),
              "cores": payload["machine"]["cores"]}
    with mlflow_tracking.run("benchmark", tags=tags, params=params, random_weights=True) as active:
        mlflow.log_metrics(stage_metrics(payload))
        mlflow.log_artifact(str(json_path))
        mlflow.log_text(text, "benchmark.md")
    return active.info.run_id
