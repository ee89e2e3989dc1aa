"""Shared fixtures: a small synthetic dataset and one local Ray instance per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KEPT_TRIALS = ("unet-gt", "gradcam-0.1", "box-then-mix")
KEPT_LABELERS = ("gradcam", "box", "mix", "sam2_multi")


@pytest.fixture(scope="session", autouse=True)
def log_dir(tmp_path_factory) -> Path:
    """The console's log files (``wsss.console.setup``, run by CLI verbs) go to a temporary folder."""
    import os

    folder = tmp_path_factory.mktemp("logs")
    os.environ["WSSS_LOG_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """74 synthetic pets (2 per breed) at 64 px; treat as read-only (copy to modify)."""
    from wsss.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("synthetic") / "pets"
    synthesize(root, images=74, size=64, seed=0)
    return root


@pytest.fixture
def writable_root(synthetic_root, tmp_path) -> Path:
    """A private copy of ``synthetic_root`` that a test may damage."""
    copy = tmp_path / "pets"
    shutil.copytree(synthetic_root, copy)
    return copy


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs, token auth on as by default) for every slow test."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield ray
    ray.shutdown()


def job_module(name: str):
    """A script of ``jobs/`` imported as a module (its ``main`` and helpers, as the job runs them)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scaled_down_smoke(tmp: Path) -> dict:
    """The smoke preset with tiny images, one epoch, and one trial per kind of label source."""
    data = yaml.safe_load((REPO / "jobs" / "configs" / "smoke.yaml").read_text())
    data["data"].update(root=str(tmp / "pets"), synthetic={"images": 74, "size": 64, "seed": 0},
                        image_size=64, limit=4)
    data["classifier"].update(image_size=64, epochs=1, batch_size=16, storage=str(tmp / "classifier"))
    data["labelers"] = [spec for spec in data["labelers"] if spec.get("id", spec["name"]) in KEPT_LABELERS]
    for spec in data["labelers"]:
        if spec["name"].startswith("sam2"):
            spec["params"]["image_size"] = 128
    data["pipeline"]["store"] = str(tmp / "masks")
    data["train"].update(model="unet", weights="none", model_options={"width": 0.125}, image_size=64,
                         storage=str(tmp / "train"))
    data["sweep"]["trials"] = [t for t in data["sweep"]["trials"] if t["name"] in KEPT_TRIALS]
    for trial in data["sweep"]["trials"]:
        trial.pop("model", None)
        trial.pop("weights", None)
    data["sweep"]["direct_eval"] = [e for e in data["sweep"]["direct_eval"] if e["labeler"] == "sam2_multi"]
    data["sweep"]["storage"] = str(tmp / "sweep")
    data["tracking"] = {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
                        "artifact_location": str(tmp / "artifacts"), "experiment": "smoke-test"}
    return data


@pytest.fixture(scope="session")
def finished_sweep(ray_local, tmp_path_factory):
    """A scaled-down smoke sweep, run once per session: (config, result, folder)."""
    from wsss.config import parse_config
    from wsss.sweep.run import run_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    config = parse_config(scaled_down_smoke(tmp))
    result = run_sweep(config)
    return config, result, tmp
