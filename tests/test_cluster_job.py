"""The cluster walk-through (docs/cluster.md) on this machine: `ray start --head` with token auth,
an MLflow tracking server from mlflow/serve.sh with its artifacts in S3, `ray job submit
--working-dir .` of a scaled-down smoke sweep whose every storage field is an s3:// URI (a local
S3: moto), the runs in MLflow; the job server refuses a request without the token.

The cluster is ours alone: its own ports, token and temp dir, stopped by the pids we started
(`ray stop` would stop every Ray instance of this user on the machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from cluster_tools import BUCKET, free_port, local_s3, s3_keys, stop_process_group, wait_for_http
from conftest import REPO, scaled_down_smoke

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent  # ray, mlflow and python of this environment


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Ray's or AWS's variables (another cluster's address or token
    must not leak in), with this environment's bin first on PATH (the job runs `python`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def start_head(temp_dir: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    ports = {name: free_port() for name in ("port", "dashboard-port", "ray-client-server-port",
                                            "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                            "metrics-export-port", "runtime-env-agent-port",
                                            "node-manager-port", "object-manager-port")}
    command = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0",
               "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}",
               *(f"--{name}={port}" for name, port in ports.items())]
    head = subprocess.Popen(command, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return head, ports["dashboard-port"]


def stop_leftovers(marker: str) -> None:
    """SIGKILL any process of ours whose command line names our temp dir (by pid)."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def job_status(dashboard: str, job_id: str, token: str | None) -> tuple[int, dict]:
    """(HTTP status, body) of the job server's GET /api/jobs/<id>, with or without the token."""
    request = urllib.request.Request(f"{dashboard}/api/jobs/{job_id}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def small_study(tmp: Path) -> Path:
    """The scaled-down smoke study cut to two cheap labelers (box needs the CAMs, so the
    classifier is trained), one direct evaluation and one trial; every storage field in S3.
    The test is about the way in (job, token, tracking server, storage), not the methods."""
    data = scaled_down_smoke(tmp)
    data["labelers"] = [{"name": "ellipse"}, {"name": "box", "params": {"threshold": 0.3}}]
    data["classifier"].update(scaling={"num_workers": 1}, storage=f"s3://{BUCKET}/classifier")
    data["pipeline"]["store"] = f"s3://{BUCKET}/masks"
    data["train"].update(epochs=1, scaling={"num_workers": 1}, storage=f"s3://{BUCKET}/train")
    data["sweep"].update(trials=[{"name": "box-unet", "labels": "box"}], storage=f"s3://{BUCKET}/sweep",
                         direct_eval=[{"labeler": "ellipse"}])
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_tracking_server(tmp: Path, s3_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """mlflow/serve.sh as on the head: SQLite backend, artifacts in the bucket."""
    port = free_port()
    server = subprocess.Popen(
        [str(REPO / "mlflow" / "serve.sh"), "--workers", "1"], start_new_session=True,
        env=clean_env(MLFLOW_PORT=str(port), MLFLOW_BIN=str(BIN / "mlflow"),
                      MLFLOW_BACKEND_STORE_URI=f"sqlite:///{tmp / 'server.db'}",
                      MLFLOW_ARTIFACTS_DESTINATION=f"s3://{BUCKET}/mlflow",
                      MLFLOW_S3_ENDPOINT_URL=s3_env["AWS_ENDPOINT_URL"], **s3_env),
        stdout=open(tmp / "mlflow.log", "wb"), stderr=subprocess.STDOUT)
    return server, f"http://127.0.0.1:{port}"


def test_job_submitted_with_token_runs_the_sweep_on_shared_storage(tmp_path):
    import mlflow

    token = uuid.uuid4().hex
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    temp_dir = tempfile.mkdtemp(prefix="wsss-ray-", dir="/tmp")  # short: Ray's socket paths
    with local_s3(tmp_path) as s3:
        server, tracking = start_tracking_server(tmp_path, s3.env)
        head, dashboard_port = start_head(temp_dir, env, tmp_path / "ray-head.log")
        dashboard = f"http://127.0.0.1:{dashboard_port}"
        runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": tracking, **s3.env,
                                    "WSSS_CACHE_DIR": str(tmp_path / "cache")}}  # not ~/.cache
        try:
            wait_for_http(f"{dashboard}/api/version", timeout=180, process=head)
            wait_for_http(f"{tracking}/health", timeout=120, process=server)
            job_id = f"wsss-{uuid.uuid4().hex[:8]}"
            started = time.monotonic()
            command = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--submission-id", job_id,
                       "--working-dir", str(REPO), "--entrypoint-num-cpus", "0",
                       "--runtime-env-json", json.dumps(runtime_env),
                       "--", "python", "jobs/sweep.py", "--config", str(small_study(tmp_path))]
            for _ in range(24):  # a head that just started may not have its job agent yet: Ray says
                submit = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                                        timeout=600)  # "try again later", as a person would
                if "No available agent to submit job" not in submit.stderr + submit.stdout:
                    break
                time.sleep(5)
            print(f"job took {time.monotonic() - started:.0f} s\n{submit.stdout[-3000:]}")
            assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-2000:]
            status, body = job_status(dashboard, job_id, token)
            assert status == 200 and body["status"] == "SUCCEEDED"
            assert body["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == tracking
            assert job_status(dashboard, job_id, None)[0] == 401  # no token: refused
            assert job_status(dashboard, job_id, uuid.uuid4().hex)[0] == 403  # another token: refused
            assert_runs_logged(mlflow.MlflowClient(tracking_uri=tracking))
            assert_storage_in_s3()
        finally:
            # every process of the group gets SIGTERM; `ray start --block` itself lingers
            stop_process_group(head, grace=5)
            stop_leftovers(temp_dir)
            stop_process_group(server, grace=10)
            shutil.rmtree(temp_dir, ignore_errors=True)


def assert_runs_logged(client) -> None:
    """The sweep's runs, read back through the tracking server: one parent, a child per
    stage, the trial's model among the artifacts the server stored in the bucket."""
    experiment = client.get_experiment_by_name("smoke-test")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    stages = {}
    for run in runs:
        stages.setdefault(run.data.tags.get("stage"), []).append(run)
    assert {"sweep", "classifier", "pseudo_masks", "direct_eval", "train"} <= set(stages)
    (parent,) = stages["sweep"]
    assert parent.info.status == "FINISHED"
    (trial,) = stages["train"]
    assert trial.info.run_name == "box-unet" and trial.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert 0.0 <= trial.data.metrics["test_micro_dice"] <= 1.0
    artifacts = s3_keys(f"{BUCKET}/mlflow")
    assert any(key.endswith(f"{trial.info.run_id}/artifacts/checkpoint/tested_model.pt") for key in artifacts)
    assert any(key.endswith("summary.md") for key in artifacts)


def assert_storage_in_s3() -> None:
    """Every storage field of the study wrote to the bucket: nothing went to a node's disk."""
    keys = s3_keys(BUCKET)
    for prefix, name in (("classifier", "classifier.pt"), ("masks", "manifest.json"),
                         ("train", "tested_model.pt"), ("train", "outcome.json"),
                         ("sweep", "tuner.pkl")):
        assert any(k.startswith(f"{BUCKET}/{prefix}/") and k.endswith(name) for k in keys), (prefix, name)
