"""Model actors and CPU tasks share a CPU-only node without starving each other."""

from __future__ import annotations

import time

import pytest
from cluster_tools import gcs_address

pytestmark = pytest.mark.slow


def heatmap_actor_ids() -> set[str]:
    """Ids of every CAM actor this Ray instance has had (alive or not)."""
    from ray.util.state import list_actors

    actors = list_actors(limit=10000, detail=True, raise_on_missing_output=False,
                         address=gcs_address())
    return {a.actor_id for a in actors if "HeatmapStage" in f"{a.repr_name} {a.class_name} {a.name}"}


def test_heatmap_actors_as_many_as_the_cores_leave_room_for_cpu_tasks(ray_local, synthetic_root,
                                                                      tmp_path):
    """As many CAM actors as the node has CPUs, with CPU labelers (box, GrabCut) behind them:
    the pipeline completes, because on a CPU-only cluster the actors hold no CPU (actors that
    took every CPU would wait forever for tasks that can never be scheduled)."""
    from wsss.config import parse_config
    from wsss.data.pets import index
    from wsss.labelers.base import LabelerContext
    from wsss.masks.graph import actor_resources, cluster_resources
    from wsss.masks.pipeline import generate_masks

    cpus, gpus = cluster_resources()
    assert gpus == 0
    config = parse_config({
        "weights_policy": "random", "data": {"root": str(synthetic_root), "image_size": 64},
        "pipeline": {"store": str(tmp_path / "masks"), "batch_size": 2, "heatmap_actors": cpus},
        "labelers": [{"name": "cam"}, {"name": "box", "params": {"threshold": 0.3}},
                     {"name": "grabcut", "params": {"threshold": 0.3, "iterations": 1}}]})
    assert actor_resources(gpus)["num_cpus"] == 0
    dataset = index(synthetic_root, limit=2)
    before, started = heatmap_actor_ids(), time.monotonic()
    summary = generate_masks(config, dataset, LabelerContext(allow_random_weights=True))
    assert time.monotonic() - started < 240
    assert len(heatmap_actor_ids() - before) == cpus  # the pool really was as large as the cores
    expected = {r.image_id for r in dataset.split("trainval", "test")}
    for key in ("cam", "box", "grabcut"):
        assert summary.per_set[key]["written"] == len(expected), key
        assert summary.open(key).manifest.complete
