"""Mask generation on real local Ray: every labeler in one job, resume, faults, quarantine."""

import time

import numpy as np
import pytest
from badfiles import write_broken

from wsss.config import parse_config
from wsss.data.pets import index
from wsss.labelers.base import LabelerContext
from wsss.masks.files import present_ids
from wsss.masks.pipeline import generate_masks
from wsss.masks.stages import FAULT_ENV
from wsss.models.classifier import build_classifier, save_classifier

pytestmark = pytest.mark.slow

CPU_LABELERS = [
    {"name": "box", "params": {"threshold": 0.3}},
    {"name": "grabcut", "params": {"threshold": 0.3, "iterations": 2}},
    {"name": "mix", "params": {"threshold": 0.3, "iterations": 2, "n_segments": 30}},
    {"name": "all_foreground"},
    {"name": "ellipse"},
]
HEATMAP_LABELERS = [{"name": "cam"}, {"name": "gradcam", "params": {"threshold": 0.2}},
                    {"name": "gradcampp"}]
SAM2_LABELERS = [
    {"name": "sam2_center", "params": {"model": "tiny"}},
    {"name": "sam2_peaks", "params": {"model": "tiny", "points": 2, "min_distance": 8}},
    {"name": "sam2_box", "params": {"model": "tiny", "threshold": 0.3}},
]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    save_classifier(build_classifier("resnet18", "none"), path, "resnet18", image_size=64)
    return str(path)


def study(root, store, labelers, limit=None, budget=0.01):
    return parse_config({
        "weights_policy": "random",
        "data": {"root": str(root), "image_size": 64, "limit": limit, "error_budget": budget},
        "pipeline": {"store": str(store), "batch_size": 4},
        "labelers": labelers,
    })


def read_all(summary, key, ids):
    mask_set = summary.open(key)
    return {image_id: mask_set.read(image_id) for image_id in ids}


def test_every_labeler_in_one_job_then_resume(ray_local, synthetic_root, tmp_path, classifier):
    config = study(synthetic_root, tmp_path / "store", HEATMAP_LABELERS + CPU_LABELERS + SAM2_LABELERS,
                   limit=2)
    dataset = index(synthetic_root, limit=2)
    ids = {r.image_id for r in dataset.split("trainval", "test")}
    context = LabelerContext(classifier_checkpoint=classifier, allow_random_weights=True)
    first = generate_masks(config, dataset, context)
    assert first.images == len(ids)
    masks = {}
    for spec in config.labelers:
        assert first.per_set[spec.key]["written"] == len(ids), spec.key
        masks[spec.key] = read_all(first, spec.key, ids)
        for mask in masks[spec.key].values():
            assert mask.shape == (64, 64) and mask.dtype == np.uint8
            assert set(np.unique(mask).tolist()) <= {0, 1, 255}
    mix, grabcut = masks["mix"], masks["grabcut"]
    assert all((mix[i] <= grabcut[i]).all() for i in ids)  # mix = GrabCut ∩ SLIC

    again = generate_masks(config, dataset, context)  # a rerun writes nothing
    assert again.images == 0 and sum(c["written"] for c in again.per_set.values()) == 0

    folder = first.open("mix").uri
    deleted = sorted(ids)[:3]
    before = {i: (tmp_path / "store" / folder.rsplit("/", 1)[1] / "masks" / f"{i}.png").read_bytes()
              for i in deleted}
    for image_id in deleted:
        (tmp_path / "store" / folder.rsplit("/", 1)[1] / "masks" / f"{image_id}.png").unlink()
    repaired = generate_masks(config, dataset, context)
    assert repaired.per_set["mix"]["written"] == len(deleted)
    assert sum(c["written"] for c in repaired.per_set.values()) == len(deleted)
    after = {i: (tmp_path / "store" / folder.rsplit("/", 1)[1] / "masks" / f"{i}.png").read_bytes()
             for i in deleted}
    assert after == before  # regenerated masks are byte-identical


def test_worker_killed_on_first_attempt_still_completes(ray_local, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, f"cpu:{tmp_path / 'cpu.fault'}")
    config = study(synthetic_root, tmp_path / "store", [{"name": "ellipse"}, {"name": "all_foreground"}])
    dataset = index(synthetic_root)
    summary = generate_masks(config, dataset, LabelerContext())
    assert (tmp_path / "cpu.fault").exists()  # the fault did fire
    expected = {r.image_id for r in dataset.split("trainval", "test")}
    for key in ("ellipse", "all_foreground"):
        mask_set = summary.open(key)
        assert mask_set.ids() == expected and mask_set.manifest.complete
    assert summary.per_set["ellipse"]["written"] == len(expected)


def test_corrupt_image_is_quarantined(ray_local, writable_root, tmp_path):
    victim = index(writable_root).split("test")[0].image_id
    write_broken(writable_root / "images" / f"{victim}.jpg", "truncated")
    config = study(writable_root, tmp_path / "store", [{"name": "ellipse"}], budget=0.05)
    summary = generate_masks(config, index(writable_root), LabelerContext())
    assert [e["image_id"] for e in summary.quarantine.entries] == [victim]
    mask_set = summary.open("ellipse")
    assert victim not in mask_set.ids() and len(mask_set.ids()) == 73
    assert mask_set.manifest.quarantine[0].reason == "truncated file"
    assert mask_set.manifest.complete


def test_unloadable_model_fails_the_job(ray_local, synthetic_root, tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    config = study(synthetic_root, tmp_path / "store", [{"name": "gradcam"}], limit=1)
    started = time.monotonic()
    with pytest.raises(Exception, match="not a readable classifier checkpoint"):
        generate_masks(config, index(synthetic_root, limit=1),
                       LabelerContext(classifier_checkpoint=str(damaged)))
    assert time.monotonic() - started < 120  # failed, did not restart forever
    assert not present_ids(str(tmp_path / "store"), "heatmaps")


def test_sets_built_on_other_sets_run_after_them_and_carry_their_identity(ray_local, synthetic_root,
                                                                           tmp_path, classifier):
    """CRF of GrabCut, agreement of GrabCut and mix, SAM2 refinement of mix (after the CPU pass),
    a CRF of SAM2 masks (a CPU pass after SAM2), CAM-guided SAM2 selection: one job."""
    from wsss.masks.plan import make_plans

    labelers = CPU_LABELERS[:3] + [
        {"name": "gradcam", "params": {"threshold": 0.3}},
        {"name": "crf", "params": {"sources": ["grabcut"]}},
        {"name": "agree", "params": {"sources": ["grabcut", "mix"]}},
        {"name": "choose", "params": {"sources": ["grabcut", "mix", "box"]}},
        {"name": "sam2_refine", "params": {"sources": ["mix"], "model": "tiny", "image_size": 128}},
        {"name": "crf", "id": "crf_of_sam2", "params": {"sources": ["sam2_refine"]}},
        {"name": "sam2_cam_select", "params": {"model": "tiny", "image_size": 128, "grid": 3,
                                               "heatmap": {"method": "gradcam"}}}]
    config = study(synthetic_root, tmp_path / "store", labelers, limit=1)
    dataset = index(synthetic_root, limit=1)
    context = LabelerContext(classifier_checkpoint=classifier, allow_random_weights=True)
    ids = {r.image_id for r in dataset.split("trainval", "test")}
    phases = {p.spec.key: p.phase for p in make_plans(config, dataset, dataset.split("trainval", "test"),
                                                      context, ["crf_of_sam2"])}
    assert phases == {"mix": "cpu", "sam2_refine": "sam2", "crf_of_sam2": "post"}  # sources first
    summary = generate_masks(config, dataset, context)
    for key in ("crf", "agree", "choose", "sam2_refine", "crf_of_sam2", "sam2_cam_select"):
        assert summary.per_set[key]["written"] == len(ids), key
    grabcut, agree = read_all(summary, "grabcut", ids), read_all(summary, "agree", ids)
    mix = read_all(summary, "mix", ids)
    for image_id in ids:  # agreement: where the two say the same, that; elsewhere, ignore
        same = grabcut[image_id] == mix[image_id]
        assert (agree[image_id][same] == grabcut[image_id][same]).all()
        assert (agree[image_id][~same] == 255).all()
    chosen = read_all(summary, "choose", ids)
    for image_id in ids:  # one candidate's whole mask
        assert any((chosen[image_id] == masks[image_id]).all() for masks in (grabcut, mix))
    plans = {p.spec.key: p for p in summary.plans}
    assert plans["crf"].identity["sources"] == {"grabcut": plans["grabcut"].fingerprint}
    changed = study(synthetic_root, tmp_path / "store", [
        {**spec, "params": {**spec.get("params", {}), "iterations": 1}} if spec["name"] == "grabcut" else spec
        for spec in labelers], limit=1)
    replanned = {p.spec.key: p for p in make_plans(changed, dataset, dataset.split("trainval", "test"), context)}
    assert replanned["crf"].fingerprint != plans["crf"].fingerprint  # a new source: a new set
    assert replanned["sam2_refine"].fingerprint == plans["sam2_refine"].fingerprint


def test_cpu_tasks_take_several_blocks_only_where_every_worker_keeps_several_tasks():
    from wsss.masks.graph import CPU_BUNDLE, cpu_batch_size

    assert cpu_batch_size(60, 16, 2) == 16  # a small set: one block per task, both cores busy
    assert cpu_batch_size(7000, 16, 2) == CPU_BUNDLE * 16  # a full set: four blocks a task
    assert cpu_batch_size(256, 16, 2) == 32  # in between: whole blocks, 4 tasks per worker
    for images in (1, 100, 1000, 100_000):
        rows = cpu_batch_size(images, 16, 4)
        assert rows % 16 == 0 and 16 <= rows <= CPU_BUNDLE * 16
        assert rows == 16 or images // rows >= 4 * 4


def test_pipeline_input_comes_in_blocks_as_large_as_a_cpu_task(ray_local, synthetic_root, tmp_path):
    # Ray Data keeps a schema and metadata per input block for the whole run (~30 KB of the
    # driver's memory each): a block per batch made the driver grow ~2 KB per image
    from wsss.masks.graph import build_dataset, cluster_resources, cpu_batch_size
    from wsss.masks.plan import make_plans

    config = study(synthetic_root, tmp_path / "store", [{"name": "ellipse"}, {"name": "grabcut"}])
    dataset = index(synthetic_root)
    context = LabelerContext(allow_random_weights=True)
    for copies in (1, 40):  # a small set, and the same rows enough times over to bundle batches
        records = dataset.split("trainval", "test") * copies
        plans = make_plans(config, dataset, records, context)
        lazy = build_dataset(plans, records, config, context)
        source = lazy._logical_plan.dag
        while source.input_dependencies:
            source = source.input_dependencies[0]
        rows = [bundle.num_rows() for bundle in source.input_data]
        per_block = cpu_batch_size(len(records), 4, cluster_resources()[0])
        assert sum(rows) == len(records) and max(rows) == per_block
        assert len(rows) == -(-len(records) // per_block)
        if copies > 1:
            assert per_block > 4  # bundled: fewer blocks than batches
