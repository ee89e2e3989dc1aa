"""The report's view of MLflow: one sweep's parent run and its children, read once.

Everything the report shows comes from here, so every number in it is a number MLflow holds:
metrics by name (``test_<policy>_micro_dice``, falling back to ``test_micro_dice`` for the
policy a run was trained under when it predates per-policy logging), params and tags as
strings, artifacts downloaded into a scratch folder on demand.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsss.metrics import METRIC_NAMES
from wsss.tracking import RANDOM_WEIGHTS_TAG

DEFAULT_TRACKING_URI = "sqlite:///mlflow/mlflow.db"



class ReportError(ValueError):
    """The runs cannot be reported (no such experiment or parent run); says what exists."""


@dataclass
class SweepRuns:
    """A sweep's parent run, its children by stage, and where its data lives."""

    experiment: Any  # mlflow.entities.Experiment
    parent: Any  # mlflow.entities.Run
    children: list[Any]
    classifier: Any | None
    summary: dict[str, Any] = field(default_factory=dict)  # the parent's sweep.json
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wsss-report-")))

    def stage(self, name: str) -> list[Any]:
        """Children of one stage, in a stable order (run name, then start time)."""
        runs = [run for run in self.children if run.data.tags.get("stage") == name]
        return sorted(runs, key=lambda r: (r.info.run_name or "", r.info.start_time or 0))

    @property
    def border_policy(self) -> str:
        return self.parent.data.params.get("border_policy", "ignore")

    @property
    def data_root(self) -> str | None:
        return self.parent.data.params.get("data_root")

    @property
    def data_format(self) -> str:
        return self.parent.data.params.get("data_format", "oxford-pets")

    @property
    def data_manifest(self) -> str | None:
        value = self.parent.data.params.get("data_manifest")
        return None if value in (None, "None", "") else value

    def mask_set_run(self, labeler_id: str) -> Any | None:
        """The pseudo_masks child of a labeler id (the newest when logged twice)."""
        runs = [r for r in self.stage("pseudo_masks") if r.data.tags.get("labeler_id") == labeler_id]
        return max(runs, key=lambda r: r.info.start_time or 0) if runs else None

    def download(self, run: Any, artifact_path: str) -> Path | None:
        """A run's artifact as a local file (None when the run has no such artifact); read in
        place from a local artifact store (checkpoints are large), else downloaded."""
        import mlflow

        in_place = local_artifact(run.info.artifact_uri, artifact_path)
        if in_place is not None:
            return in_place if in_place.is_file() else None
        target = self.scratch / run.info.run_id
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                        artifact_path=artifact_path,
                                                        dst_path=str(target))
        except (OSError, mlflow.exceptions.MlflowException):
            return None
        return Path(local) if Path(local).exists() else None


def local_artifact(artifact_uri: str, artifact_path: str) -> Path | None:
    """Where an artifact of a local (``file:`` or plain path) artifact store lies, else None."""
    from urllib.parse import unquote, urlparse

    if artifact_uri.startswith("file:"):
        return Path(unquote(urlparse(artifact_uri).path)) / artifact_path
    if "://" not in artifact_uri and not artifact_uri.startswith("mlflow-artifacts:"):
        return Path(artifact_uri) / artifact_path
    return None


def is_random_init(run: Any) -> bool:
    """True for runs tagged as random-init (their numbers say nothing about the method)."""
    return run is not None and run.data.tags.get(RANDOM_WEIGHTS_TAG) == "true"


def run_policy(run: Any) -> str:
    """The border policy a run was trained / scored under (its ``test_*`` names)."""
    return run.data.params.get("border_policy") or run.data.tags.get("border_policy") or "ignore"


def metric(run: Any, prefix: str, policy: str, name: str, aggregation: str = "micro") -> float | None:
    """``<prefix>_<policy>_<aggregation>_<name>``; for the run's own policy, also the plain name."""
    metrics = run.data.metrics
    key = f"{prefix}_{policy}_{aggregation}_{name}"
    if key in metrics:
        return metrics[key]
    if policy == run_policy(run):
        return metrics.get(f"{prefix}_{aggregation}_{name}")
    return None


def metric_key(run: Any, prefix: str, policy: str, name: str, aggregation: str = "micro") -> str | None:
    """The MLflow metric name ``metric`` reads (None when it has nothing)."""
    key = f"{prefix}_{policy}_{aggregation}_{name}"
    if key in run.data.metrics:
        return key
    plain = f"{prefix}_{aggregation}_{name}"
    return plain if policy == run_policy(run) and plain in run.data.metrics else None


def scores(run: Any, prefix: str, policy: str) -> dict[str, float | None]:
    """The five micro metrics plus ``per_image_dice`` of a run under a policy."""
    values = {name: metric(run, prefix, policy, name) for name in METRIC_NAMES}
    values["per_image_dice"] = metric(run, prefix, policy, "dice", "per_image")
    return values


def threshold_of(run: Any) -> float | None:
    """The CAM threshold of a run (train: ``threshold``; mask set: ``params.threshold``)."""
    params = run.data.params
    for key in ("threshold", "params.threshold"):
        value = params.get(key)
        if value not in (None, "None", ""):
            try:
                return float(value)
            except ValueError:
                return None
    return None


def label_keys(run: Any) -> list[str]:
    """The label sources a train run used, in schedule order (``box:1,mix:1`` -> box, mix)."""
    labels = run.data.params.get("labels") or run.data.tags.get("labels") or ""
    return [part.partition(":")[0].strip() for part in labels.split(",") if part.strip()]


def _client(tracking_uri: str | None):
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise ReportError(f"no MLflow store at {uri}; run the sweep first (make demo) or pass "
                          f"--tracking-uri")
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient()


def _search(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _has_artifact(client: Any, run: Any, name: str) -> bool:
    return any(item.path == name for item in client.list_artifacts(run.info.run_id))


def pick_parent(client: Any, experiment: Any, parent_id: str | None) -> Any:
    """``parent_id``'s run, else the newest sweep parent that finished (sweep.json logged),
    preferring FINISHED over FAILED (a sweep with failed trials still has a summary)."""
    if parent_id:
        run = client.get_run(parent_id)
        if run.info.experiment_id != experiment.experiment_id:
            raise ReportError(f"--parent {parent_id} belongs to experiment {run.info.experiment_id}, "
                              f"not {experiment.name!r}")
        return run
    parents = _search(client, experiment.experiment_id, "tags.stage = 'sweep'")
    done = [run for run in parents if _has_artifact(client, run, "sweep.json")]
    if not done:
        raise ReportError(f"experiment {experiment.name!r} has no finished sweep (a parent run with "
                          f"sweep.json); {len(parents)} unfinished; run jobs/sweep.py first")
    return max(done, key=lambda r: (r.info.status == "FINISHED", r.info.start_time or 0))


def _classifier(client: Any, experiment: Any, children: list[Any], summary: dict) -> Any | None:
    """The classifier the sweep used: its child, or the run that trained the reused checkpoint."""
    own = [run for run in children if run.data.tags.get("stage") == "classifier"]
    if own:
        return own[0]
    checkpoint = str(summary.get("classifier") or "")
    if not checkpoint:
        return None
    runs = _search(client, experiment.experiment_id, "tags.stage = 'classifier'")
    matches = [r for r in runs if r.data.params.get("fingerprint") and
               r.data.params["fingerprint"] in checkpoint]
    return max(matches, key=lambda r: r.info.start_time or 0) if matches else None


def load_sweep(experiment_name: str, tracking_uri: str | None = None,
               parent_id: str | None = None) -> SweepRuns:
    """Read a sweep's runs: the newest finished parent in the experiment unless given."""
    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        known = ", ".join(repr(e.name) for e in client.search_experiments()) or "none"
        raise ReportError(f"no experiment {experiment_name!r} in the store (present: {known})")
    parent = pick_parent(client, experiment, parent_id)
    children = _search(client, experiment.experiment_id,
                       f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    runs = SweepRuns(experiment, parent, [r for r in children if r.info.status == "FINISHED"], None)
    local = runs.download(parent, "sweep.json")
    runs.summary = json.loads(local.read_text()) if local else {}
    runs.classifier = _classifier(client, experiment, runs.children, runs.summary)
    return runs
