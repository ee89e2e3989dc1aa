"""MLflow: where runs go, and the small set of calls every stage uses to log them.

Locally the store is SQLite (``sqlite:///mlflow/mlflow.db``) with artifacts in
``mlflow/artifacts``; SQLite takes one writer, so only the driver process logs (Ray workers
return their numbers and files to it). On a cluster ``MLFLOW_TRACKING_URI`` points at the
tracking server on the head node and overrides the config.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wsss import console
from wsss.config import TrackingConfig

RANDOM_WEIGHTS_TAG = "wsss.random_weights"
ENV_URI = "MLFLOW_TRACKING_URI"
# What the user (or a cluster's runtime env) set, read before MLflow itself writes the variable.
_USER_URI = os.environ.get(ENV_URI)


def tracking_uri(tracking: TrackingConfig) -> str:
    """The user's MLFLOW_TRACKING_URI when set, else the config's."""
    return _USER_URI or tracking.tracking_uri


def configure(tracking: TrackingConfig) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    import mlflow

    console.quiet_libraries()  # MLflow sets up its own console handlers on import
    uri = tracking_uri(tracking)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    # mlflow.set_tracking_uri exports the URI for subprocesses; undo that, so that a job started
    # from here (another study, a test's subprocess) reads its own config, not this one.
    if _USER_URI is None:
        os.environ.pop(ENV_URI, None)
    else:
        os.environ[ENV_URI] = _USER_URI
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    artifact_location = None
    if not uri.startswith(("http://", "https://")):
        artifacts = tracking.artifact_location
        artifact_location = artifacts if "://" in artifacts else Path(artifacts).resolve().as_uri()
    experiment_id = mlflow.create_experiment(tracking.experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    """The checkout's commit (with '-dirty' when it has changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params -> ``{"a.b": "value"}`` with values as MLflow-sized strings."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:6000]
    return flat


@contextmanager
def run(name: str, *, tags: dict[str, str] | None = None, params: dict[str, Any] | None = None,
        parent_run_id: str | None = None, random_weights: bool = False) -> Iterator[Any]:
    """Start an MLflow run (a child when ``parent_run_id`` is given) with tags and params."""
    import mlflow

    all_tags = {"git_commit": git_commit(), **(tags or {})}
    if random_weights:
        all_tags[RANDOM_WEIGHTS_TAG] = "true"
    nested = parent_run_id is not None and mlflow.active_run() is not None
    with mlflow.start_run(run_name=name, tags=all_tags, parent_run_id=parent_run_id,
                          nested=nested) as active:
        if params:
            mlflow.log_params(flatten(params))
        yield active


def log_input(location: str, name: str, digest: str, context: str) -> None:
    """Record on the active run what it read: a dataset or a mask set, by its fingerprint
    (``mlflow.log_input``: MLflow's Datasets view shows the lineage of every run)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    import mlflow

    with warnings.catch_warnings():  # a local path matches two equivalent source kinds
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(location))
    mlflow.log_input(MetaDataset(source, name=name, digest=digest), context=context)
