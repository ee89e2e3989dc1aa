"""Several nodes on one machine (ray.cluster_utils.Cluster) with a local S3 as shared storage.

The head holds no CPU (as the job driver's node on a cluster: coordination only), so every
task, actor and Train worker runs on the 1-CPU worker nodes. Where a node is removed "during"
work, the work is first held in flight on purpose (the S3 server paused, a Train callback
waiting), so the tests never race the 2 cores of CI.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cluster_tools import BUCKET, free_port, gcs_address, local_s3, s3_keys

from wsss import storage

pytestmark = pytest.mark.slow

LIMIT = 4  # images per split


@dataclass
class Nodes:
    cluster: object
    workers: list  # the removable worker nodes (1 CPU each), oldest first
    root: Path  # a synthetic dataset every node reads
    moto_pid: int

    def remove(self, node_id: str) -> None:
        """Take a worker node away at once, as a lost instance."""
        node = next(n for n in self.workers if n.node_id == node_id)
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def replace(self) -> None:
        """Add fresh 1-CPU worker nodes (as the autoscaler would) until there are two."""
        while len(self.workers) < 2:
            self.workers.append(self.cluster.add_node(num_cpus=1))
        self.cluster.wait_for_nodes()

    def worker_ids(self) -> set[str]:
        return {node.node_id for node in self.workers}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, synthetic_root):
    """A head with no CPU and two 1-CPU worker nodes, all pointing at one local S3.

    The session's local Ray (``ray_local``), when a test before this module started it, is
    shut down for the module and started again after it with the same settings."""
    import ray
    from ray.cluster_utils import Cluster

    tmp = tmp_path_factory.mktemp("nodes")
    restore_local = ray.is_initialized()
    ray.shutdown()
    with local_s3(tmp) as s3:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "include_dashboard": True, "dashboard_port": free_port()})
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        # the job's runtime env reaches every task, actor and Train worker on every node
        ray.init(address=cluster.address, runtime_env={"env_vars": s3.env}, log_to_driver=False)
        try:
            yield Nodes(cluster, workers, synthetic_root, s3.pid)
        finally:
            ray.shutdown()
            cluster.shutdown()
    if restore_local:  # as conftest.ray_local starts it
        ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False)


def study(nodes: Nodes, **sections):
    from wsss.config import parse_config

    data = {"weights_policy": "random",
            "data": {"root": str(nodes.root), "image_size": 64, "limit": LIMIT},
            "pipeline": {"store": f"s3://{BUCKET}/masks", "batch_size": 2},
            "labelers": [{"name": "ellipse"}, {"name": "all_foreground"}],
            "train": {"model": "unet", "model_options": {"width": 0.125}, "weights": "none",
                      "labels": "ellipse", "epochs": 3, "batch_size": 4, "eval_batch_size": 8,
                      "image_size": 64, "bf16": False, "max_failures": 1,
                      "scaling": {"num_workers": 2}, "storage": f"s3://{BUCKET}/train"}}
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    return parse_config(data)


def nodes_running_writes() -> set[str] | None:
    """The nodes with a RUNNING mask-writing task, once there are two of them."""
    from ray.util.state import list_tasks

    tasks = list_tasks(filters=[("state", "=", "RUNNING")], limit=1000, raise_on_missing_output=False,
                       address=gcs_address())
    busy = {t.node_id for t in tasks if "write_stage" in (t.name or "")}
    return busy if len(busy) >= 2 else None


def wait_for(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")


def test_masks_spread_over_nodes_and_survive_losing_one(nodes, monkeypatch):
    """Mask generation into s3:// runs on both worker nodes; one is lost mid-run (its task
    stuck on a write to the paused S3); the run still ends with every mask set complete."""
    import wsss.masks.pipeline as pipeline
    from wsss.data.pets import index
    from wsss.labelers.base import LabelerContext

    config = study(nodes)
    dataset = index(nodes.root, limit=LIMIT)
    expected = {r.image_id for r in dataset.split("trainval", "test")}
    build = pipeline.build_dataset

    def build_then_pause_s3(*args, **kwargs):
        lazy = build(*args, **kwargs)  # the plans and the store listing are done by now
        os.kill(nodes.moto_pid, signal.SIGSTOP)  # every write now waits: tasks stay in flight
        return lazy

    monkeypatch.setattr(pipeline, "build_dataset", build_then_pause_s3)
    result = {}
    run = threading.Thread(target=lambda: result.update(
        summary=pipeline.generate_masks(config, dataset, LabelerContext())), daemon=True)
    run.start()
    try:
        busy = wait_for(nodes_running_writes, "write tasks running on both worker nodes")
        assert busy <= nodes.worker_ids()  # spread over the nodes, none on the head
        nodes.remove(sorted(busy)[0])  # its task dies with it, mid-write
    finally:
        os.kill(nodes.moto_pid, signal.SIGCONT)
    nodes.replace()
    run.join(timeout=300)
    assert not run.is_alive() and "summary" in result, "mask generation did not finish"
    for key in ("ellipse", "all_foreground"):
        mask_set = result["summary"].open(key)
        assert mask_set.uri.startswith(f"s3://{BUCKET}/masks/")
        assert mask_set.ids() == expected and mask_set.manifest.complete
        assert mask_set.manifest.images_present == len(expected)
    ellipse = result["summary"].open("ellipse")
    masks = [ellipse.read(image_id) for image_id in sorted(expected)]
    assert all(m.shape == (64, 64) and set(np.unique(m)) <= {0, 1} for m in masks)


def _pausing_callback(blocked: Path, release: Path):
    """A Train callback (it runs in the controller) that waits on the first report until
    ``release`` exists: the workers cannot finish meanwhile (their next reports queue up)."""
    from ray.train import UserCallback

    class PauseAfterFirstReport(UserCallback):  # defined here: pickled by value to the controller
        def after_report(self, run_context, metrics, checkpoint):
            if checkpoint is None or release.exists():
                return
            blocked.write_text("waiting")
            deadline = time.monotonic() + 300
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.2)

    return PauseAfterFirstReport()


def train_worker_nodes() -> list[str] | None:
    """The nodes of the two live Train workers, once both are up."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000, raise_on_missing_output=False,
                         address=gcs_address())
    placed = [a.node_id for a in actors if "RayTrainWorker" in (a.class_name or "")]
    return placed if len(placed) == 2 else None


def test_training_spreads_reads_s3_masks_and_resumes_after_losing_a_node(nodes, tmp_path, monkeypatch):
    """Two Train workers (every CPU of the cluster) on two nodes, labels read from the s3://
    mask store, checkpoints to s3://; a worker's node is lost after the first checkpoint and
    the run resumes from that checkpoint in S3 on a fresh node."""
    from wsss.data.pets import index
    from wsss.labelers.base import LabelerContext
    from wsss.masks.pipeline import generate_masks
    from wsss.train.segmentation import fit_segmentation

    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    config = study(nodes)
    generate_masks(config, index(nodes.root, limit=LIMIT), LabelerContext())  # done above: reused
    blocked, release = tmp_path / "blocked", tmp_path / "release"
    result, errors = {}, []

    def fit():
        try:
            result["outcome"] = fit_segmentation(config, name="s3-node-loss",
                                                 callbacks=[_pausing_callback(blocked, release)])
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    run = threading.Thread(target=fit, daemon=True)
    run.start()
    try:
        wait_for(lambda: blocked.exists() or errors, "the first checkpoint", timeout=300)
        placed = wait_for(train_worker_nodes, "two Train workers")
        assert len(set(placed)) == 2 and set(placed) <= nodes.worker_ids()  # one per node
        nodes.remove(placed[0])
        nodes.replace()  # room for the restarted worker group
    finally:
        release.write_text("go")
        run.join(timeout=400)
    assert not errors, errors
    outcome = result["outcome"]
    epochs = [row["epoch"] for row in outcome.history]
    assert epochs == [1, 2, 3]
    started = [row["attempt_started_at"] for row in outcome.history]
    # a second attempt resumed from a checkpoint (not from scratch): after epoch 1, or after 2
    # where the controller took the queued epoch-2 report before it saw the lost worker
    assert started[0] == 1 and started in ([1, 2, 2], [1, 1, 3]), started
    keys = s3_keys(f"{BUCKET}/train/s3-node-loss")
    assert any(k.endswith("/state.pt") and "/checkpoint_" in k for k in keys)
    assert outcome.model_file == f"s3://{BUCKET}/train/s3-node-loss/tested_model.pt"
    assert outcome.model_file.removeprefix("s3://") in keys
    assert outcome.checkpoint.startswith(f"s3://{BUCKET}/train/s3-node-loss/checkpoint_")
    assert outcome.test["images"] == LIMIT and 0.0 <= outcome.test["micro"]["dice"] <= 1.0


def _map_operators(dataset) -> dict[str, object]:
    """{function or class name: logical MapBatches operator} of a lazy Ray dataset."""
    found, pending = {}, [dataset._logical_plan.dag]
    while pending:
        op = pending.pop()
        fn = getattr(op, "fn", None)
        if fn is not None:
            found[getattr(fn, "__name__", type(fn).__name__)] = op
        pending.extend(op.input_dependencies)
    return found


def test_gpu_stages_share_one_gpu_and_both_run_end_to_end(nodes, tmp_path):
    """With a one-GPU node in the cluster (a resource count only: no CUDA runs here, so the
    actors fall back to the CPU), the CAM and SAM2 actors ask for half a GPU and no CPU each,
    both pools start on that node, and the pipeline runs to the end; decode, GrabCut/SLIC and
    writes ask for a CPU and no GPU."""
    from ray.data import ActorPoolStrategy, TaskPoolStrategy
    from ray.util.state import list_actors

    from wsss.data.pets import index
    from wsss.labelers.base import LabelerContext
    from wsss.masks.graph import actor_resources, build_dataset, cluster_resources
    from wsss.masks.pipeline import generate_masks
    from wsss.masks.plan import make_plans

    gpu_node = nodes.cluster.add_node(num_cpus=1, num_gpus=1)
    nodes.cluster.wait_for_nodes()
    try:
        wait_for(lambda: cluster_resources()[1] == 1, "the GPU node to register")
        config = study(nodes, pipeline={"store": str(tmp_path / "masks"), "batch_size": 4},
                       train={"labels": "gt"}, data={"limit": 1}, labelers=[
            {"name": "gradcam"}, {"name": "grabcut", "params": {"iterations": 1}},
            {"name": "mix", "params": {"iterations": 1, "n_segments": 20}},
            {"name": "sam2_center", "params": {"model": "tiny", "image_size": 128}}])
        dataset = index(nodes.root, limit=1)
        records = dataset.split("trainval", "test")
        context = LabelerContext(allow_random_weights=True)
        plans = make_plans(config, dataset, records, context)
        stages = _map_operators(build_dataset(plans, records, config, context))
        summary = generate_masks(config, dataset, context)
        actors = list_actors(address=gcs_address(), limit=10000, detail=True,
                             raise_on_missing_output=False)
        placed = {stage: {a.node_id for a in actors if stage in f"{a.repr_name} {a.class_name} {a.name}"}
                  for stage in ("HeatmapStage", "Sam2Stage")}
    finally:
        nodes.cluster.remove_node(gpu_node)
    assert set(stages) == {"decode_stage", "HeatmapStage", "cpu_stage", "Sam2Stage", "write_stage"}
    for name in ("HeatmapStage", "Sam2Stage"):
        assert stages[name].ray_remote_args.get("num_gpus") == 0.5, name
        assert stages[name].ray_remote_args.get("num_cpus") == 0, name
        assert isinstance(stages[name].compute, ActorPoolStrategy)
    for name in ("decode_stage", "cpu_stage", "write_stage"):
        assert not stages[name].ray_remote_args.get("num_gpus"), name
        assert stages[name].ray_remote_args.get("num_cpus") == 1, name
        assert isinstance(stages[name].compute, TaskPoolStrategy)
    assert placed == {"HeatmapStage": {gpu_node.node_id}, "Sam2Stage": {gpu_node.node_id}}  # together
    for key in ("gradcam", "grabcut", "mix", "sam2_center"):
        assert summary.per_set[key]["written"] == len(records), key
    # Without GPUs the model actors hold no CPU, so CPU tasks always find one on every node.
    assert actor_resources(0) == {"num_gpus": 0, "num_cpus": 0}
    assert actor_resources(4) == {"num_gpus": 1, "num_cpus": 0}
    assert actor_resources(4, gpu_stages=2) == {"num_gpus": 0.5, "num_cpus": 0}
