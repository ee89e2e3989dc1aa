import numpy as np
import pytest

from wsss.metrics import (
    IGNORE,
    SegmentationMeter,
    confusion,
    flat_metrics,
    scores,
    trimap_to_target,
)

# 2x4 trimap: pet on the left, border in column 2, background on the right.
TRIMAP = np.array([[1, 1, 3, 2], [1, 1, 3, 2]], dtype=np.uint8)
PRED = np.array([[1, 0, 1, 1], [1, 1, 1, 0]], dtype=np.uint8)


def test_trimap_policies():
    assert trimap_to_target(TRIMAP, "ignore")[:, 2].tolist() == [IGNORE, IGNORE]
    assert trimap_to_target(TRIMAP, "foreground")[:, 2].tolist() == [1, 1]
    assert trimap_to_target(TRIMAP, "background")[:, 2].tolist() == [0, 0]
    with pytest.raises(ValueError, match="allowed: ignore, foreground, background"):
        trimap_to_target(TRIMAP, "inside")


@pytest.mark.parametrize(
    "policy, expected",
    [
        # pet pixels: (0,0) tp, (0,1) fn, (1,0) tp, (1,1) tp; background: (0,3) fp, (1,3) tn
        ("ignore", [3, 1, 1, 1]),
        # border both predicted 1 -> 2 more tp
        ("foreground", [5, 1, 1, 1]),
        # border both predicted 1 but background -> 2 more fp
        ("background", [3, 3, 1, 1]),
    ],
)
def test_confusion_by_hand(policy, expected):
    counts = confusion(PRED, trimap_to_target(TRIMAP, policy))
    assert counts.tolist() == expected


def test_scores_by_hand():
    result = scores(np.array([3, 1, 1, 1]))
    assert result["dice"] == pytest.approx(6 / 8)
    assert result["iou"] == pytest.approx(3 / 5)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 4)


def test_empty_prediction_on_empty_target_is_perfect():
    target = np.zeros((4, 4), np.uint8)
    result = scores(confusion(np.zeros((4, 4), bool), target))
    assert result == {"dice": 1.0, "iou": 1.0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0}


def test_empty_prediction_on_pet_scores_zero_overlap():
    target = np.zeros((4, 4), np.uint8)
    target[:2] = 1
    result = scores(confusion(np.zeros((4, 4), bool), target))
    assert result["dice"] == 0.0 and result["iou"] == 0.0 and result["recall"] == 0.0
    assert result["precision"] == 1.0  # claimed nothing false
    assert result["accuracy"] == 0.5


def test_all_ignore_image_is_left_out():
    meter = SegmentationMeter()
    meter.update(np.ones((3, 3), bool), np.full((3, 3), IGNORE, np.uint8))
    meter.update(PRED, trimap_to_target(TRIMAP))
    result = meter.result()
    assert result["images"] == 1 and result["images_ignored"] == 1
    assert result["micro"]["dice"] == pytest.approx(6 / 8)


def test_micro_and_per_image_differ_and_are_named():
    big_target = np.ones((10, 10), np.uint8)
    big_pred = np.ones((10, 10), bool)  # perfect, 100 tp
    small_target = np.zeros((2, 2), np.uint8)
    small_target[0, 0] = 1
    small_pred = np.zeros((2, 2), bool)  # misses its only pet pixel
    meter = SegmentationMeter()
    meter.update(big_pred, big_target)
    meter.update(small_pred, small_target)
    result = meter.result()
    assert result["per_image"]["dice"] == pytest.approx((1.0 + 0.0) / 2)
    assert result["micro"]["dice"] == pytest.approx(200 / 201)
    flat = flat_metrics(result, prefix="test_")
    assert flat["test_micro_dice"] == result["micro"]["dice"]
    assert flat["test_per_image_dice"] == result["per_image"]["dice"]


def test_vector_round_trip_merges_like_merge():
    a, b = SegmentationMeter(), SegmentationMeter()
    a.update(PRED, trimap_to_target(TRIMAP))
    b.update(np.ones((2, 4), bool), trimap_to_target(TRIMAP, "foreground"))
    merged = SegmentationMeter.from_vector(a.as_vector() + b.as_vector())
    a.merge(b)
    assert merged.result() == a.result()


def test_reduce_from_all_processes_sums_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_reduce_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    results = [np.load(tmp_path / f"rank{r}.npy") for r in range(2)]
    single = SegmentationMeter()
    for rank in range(2):
        _rank_meter(rank, single)
    assert np.allclose(results[0], single.as_vector())
    assert np.allclose(results[1], single.as_vector())


def _rank_meter(rank, meter):
    rng = np.random.default_rng(rank)
    for _ in range(3):
        meter.update(rng.random((8, 8)) > 0.5, (rng.random((8, 8)) > 0.4).astype(np.uint8))


def _reduce_worker(rank, world, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=world)
    meter = SegmentationMeter()
    _rank_meter(rank, meter)
    np.save(f"{out}/rank{rank}.npy", meter.reduce_from_all_processes().as_vector())
    dist.destroy_process_group()
