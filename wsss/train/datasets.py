"""The Ray datasets a segmentation run reads, built one block at a time on the workers.

- train: the image and one target column per label source of the schedule (plus a loss-weight
  column where agreement voters or reviewed masks weigh pixels), in one seeded random order;
- val: the image and ``target`` (what selection and the LR schedule read: the run's own final
  labels, or ground truth only for ``val_gt``), and ``gt_target`` when asked;
- test: the image, its row and the ground-truth class map under each border policy the truth has.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from wsss.config import StudyConfig, resolve_select
from wsss.data.arrays import reference, split_rows
from wsss.metrics import BORDER_POLICIES, IGNORE
from wsss.train.common import (
    built_dataset,
    shuffled_order,
)
from wsss.train.labels import (
    GROUND_TRUTH,
    MaskSetSource,
    ReviewedSource,
)
from wsss.train.steps import ground_truth_targets


def val_columns(schedule, val, selection: str, border_policy: str, gt_metrics: bool,
                rows: slice = slice(None), classes: bool = False) -> dict:
    """The val set's columns (of ``rows``): ``target`` is what selection and the LR schedule
    read (the run's own final labels, or ground truth only for ``val_gt``); ``gt_target`` only
    when asked. ``val`` is a split or its ``reference`` (read where the block is built).
    ``classes``: ground truth is the class maps (several classes per image)."""
    arrays = split_rows(val)
    ids = arrays.image_ids[rows]
    images = np.asarray(arrays.images[rows])
    if classes:
        truth = lambda: np.asarray(arrays.classmaps[rows])  # noqa: E731
    else:
        truth = lambda: ground_truth_targets(np.asarray(arrays.trimaps[rows]), border_policy)  # noqa: E731
    columns = {"image": images,
               "target": truth() if selection == "val_gt" else schedule.final.targets(ids, images.shape[1])}
    if gt_metrics and selection != "val_gt":
        columns["gt_target"] = truth()
    return columns


def agreement_weights(targets: np.ndarray, voters: list[np.ndarray]) -> np.ndarray:
    """Per-pixel loss weights (uint8, 255 = full): the share of ``voters`` (other mask sets'
    masks of the same images) that agree with the target; a voter's 255 abstains, and a pixel
    no voter speaks for keeps full weight."""
    votes = np.stack(voters)  # V x N x S x S
    speaking = votes != IGNORE
    agreeing = (votes == targets[None]) & speaking
    share = np.divide(agreeing.sum(0), speaking.sum(0), out=np.ones(targets.shape, np.float64),
                      where=speaking.any(0))
    return np.rint(share * 255).astype(np.uint8)


def edge_ignored(targets: np.ndarray, width: int) -> np.ndarray:
    """``targets`` (N x S x S labels, 255 ignore) with every pixel within ``width`` pixels of a
    boundary between two labels set to 255: a pseudo-mask is least sure at its edges."""
    import cv2

    if width <= 0:
        return targets
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    out = targets.copy()
    for index, target in enumerate(targets):
        values = [v for v in np.unique(target) if v != IGNORE]
        if len(values) < 2:
            continue
        band = np.zeros(target.shape, bool)
        for value in values:
            region = (target == value).astype(np.uint8)
            band |= (cv2.dilate(region, kernel) > 0) & ~(cv2.erode(region, kernel) > 0)
        out[index][band] = IGNORE
    return out


def train_columns(start: int, stop: int, *, train, order: np.ndarray, sources, voters,
                  edge_band: int = 0) -> dict:
    """Rows ``order[start:stop]`` of the train split: image, one target column per source and,
    with ``voters``, a weight column per source (``agreement_weights``); with ``edge_band``,
    a pseudo-mask's edges ignored (``edge_ignored``; ground truth keeps its own)."""
    arrays = split_rows(train)
    rows = order[start:stop]
    ids = [arrays.image_ids[row] for row in rows]
    images = np.asarray(arrays.images[rows])
    size = images.shape[1]
    columns = {"image": images}
    votes = [voter.targets(ids, size) for voter in voters]
    for index, source in enumerate(sources):
        columns[f"target_{index}"] = source.targets(ids, size)
        if edge_band and source.name != GROUND_TRUTH:  # trimaps or class maps keep their own
            columns[f"target_{index}"] = edge_ignored(columns[f"target_{index}"], edge_band)
        weights = [agreement_weights(columns[f"target_{index}"], votes)] if votes else []
        if getattr(source, "weights", None) is not None:
            weights.append(source.weights(ids, size))
        weights = [w for w in weights if w is not None]
        if weights:  # both: the product, still 255 = full
            columns[f"weight_{index}"] = (weights[0] if len(weights) == 1 else
                                          np.rint(weights[0].astype(np.float32) * weights[1] / 255).astype(np.uint8))
    return columns


def val_block(start: int, stop: int, **kwargs) -> dict:
    return val_columns(rows=slice(start, stop), **kwargs)


def test_policies(border_policy: str, classes: bool) -> tuple[str, ...]:
    """The border policies test is scored under, the configured one first: every policy for a
    trimap's border, the configured one alone for class maps (their ignore is their own)."""
    return (border_policy,) if classes else (border_policy, *(p for p in BORDER_POLICIES if p != border_policy))


def test_columns(start: int, stop: int, *, test, border_policy: str, classes: bool = False) -> dict:
    """Rows [start, stop) of test: image, the row index (test is also scored per image) and the
    ground-truth class map under each of ``test_policies`` (``truth__<policy>``); with
    ``classes`` the class-indexed truth."""
    arrays = split_rows(test)
    columns = {"image": np.asarray(arrays.images[start:stop]), "index": np.arange(start, stop, dtype=np.int64)}
    if classes:
        columns[f"truth__{border_policy}"] = np.asarray(arrays.classmaps[start:stop])
        return columns
    trimaps = np.asarray(arrays.trimaps[start:stop])
    for policy in test_policies(border_policy, classes):
        columns[f"truth__{policy}"] = ground_truth_targets(trimaps, policy)
    return columns


def warn_missing(sources, image_ids: list[str]) -> None:
    """Say, on the driver, how many training images each mask set lacks (they train as
    all-ignore: nothing enters the loss)."""
    for source in sources:
        absent = source.absent(image_ids) if isinstance(source, (MaskSetSource, ReviewedSource)) else []
        if absent:
            print(f"mask set {source.name}: {len(absent)} of {len(image_ids)} images have no "
                  f"mask and are ignored in training", file=sys.stderr)


def build_datasets(schedule, splits: dict[str, Any], config: StudyConfig, classes: bool,
                   voters: list[Any] = (), here: bool = False) -> dict:
    """Ray datasets built one block at a time (``built_dataset``): train (``train_columns``, in
    one seeded random order), val (``val_columns``) and test (``test_columns``). Pixels come
    from the memory-mapped decode cache and targets are made per block, so the driver never
    holds a split's pixels or targets. ``here``: for the in-process worker, the same blocks
    held in this process (``wsss.train.local.BlockDataset``)."""
    border_policy, seed = config.data.border_policy, config.train.seed
    train, val, test = splits["train"], splits["val"], splits["test"]
    warn_missing([*schedule.sources, *voters], train.image_ids)
    selection = resolve_select(config.train.select, [source.name for source in schedule.sources])
    return {
        "train": built_dataset(len(train), train_columns, here=here, train=reference(train),
                               order=shuffled_order(len(train), seed), sources=schedule.sources,
                               voters=list(voters), edge_band=config.train.edge_band),
        "val": built_dataset(len(val), val_block, here=here, val=reference(val), schedule=schedule,
                             selection=selection, border_policy=border_policy,
                             gt_metrics=config.train.val_gt_metrics, classes=classes),
        "test": built_dataset(len(test), test_columns, here=here, test=reference(test), border_policy=border_policy,
                              classes=classes),
    }
