"""The Ray Train worker loop of segmentation training (DDP), checkpoints, curriculum, test.

Each worker resumes from the run's latest checkpoint (a restarted worker group, or a rerun with
the same name and storage), trains on its shard of the train set with the targets of the label
schedule's step for the epoch, scores val (every epoch) and finally test on the checkpoint that
``wsss.train.settings.best_metric`` names (against the run's own labels for a weakly supervised
run, ground truth only for ``val_gt``; or simply the last epoch). The LR schedule steps on the
same val loss. Test scores against ground truth; every image counts exactly once
(``wsss.train.common.eval_batches``) and the counts merge across ranks in one all-reduce. One
class or several, the loop is the same: class-map targets, one meter, two views of it.
Rank 0 writes a checkpoint every epoch; ``Result.return_value`` carries the history and test.
The driver side is ``wsss.train.segmentation``; what it hands over is ``TrainSettings``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from wsss.data.transforms import paired_augment
from wsss.metrics import SegmentationMeter, flat_metrics
from wsss.models.weights_files import CHECKPOINT_FORMAT
from wsss.train.common import (
    all_reduce_sums,
    autocast,
    dataset_shard,
    eval_batches,
    load_state,
    prepare_model,
    rank_and_world,
    report,
    reported_checkpoints,
    restore_state,
    seed_everything,
    worker_device,
)
from wsss.train.labels import source_index
from wsss.train.settings import TrainSettings
from wsss.train.steps import predict_logits, predicted_classes, score_logits, segmentation_loss

SHUFFLE_ROWS = 256  # local shuffle buffer per worker (rows)
PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.1, 3  # ReduceLROnPlateau on val loss (the study's scheduler)
FAIL_ONCE_ENV = "WSSS_TRAIN_FAIL_ONCE"  # "EPOCH:MARKER_FILE": rank 0 raises once at EPOCH (tests)


class InjectedFailure(RuntimeError):
    """Raised on purpose (``WSSS_TRAIN_FAIL_ONCE``) to exercise recovery from a worker failure."""


def _maybe_fail(settings: TrainSettings, epoch: int, rank: int) -> None:
    fail = settings.fail_once
    if not fail or fail.epoch != epoch or rank != 0 or os.path.exists(fail.marker):
        return
    Path(fail.marker).write_text(f"failed once at epoch {epoch}\n")
    raise InjectedFailure(f"injected worker failure at epoch {epoch} ({FAIL_ONCE_ENV})")


def _column(settings: TrainSettings, epoch: int) -> tuple[int, str]:
    index = source_index(settings.schedule, epoch)
    return index, f"target_{index}"


def train_epoch(model, optimizer, settings: TrainSettings, epoch: int, device) -> list[float]:
    """One pass over this worker's shard: [loss sum, valid pixels, foreground pixels, images]."""
    import torch

    rank, _ = rank_and_world()
    _, column = _column(settings, epoch)
    generator = torch.Generator(device=device)
    generator.manual_seed(settings.seed * 7919 + 1000 * epoch + rank)
    channels_last = device.type == "cuda"
    model.train()
    totals = [0.0, 0.0, 0.0, 0.0]
    shard = dataset_shard("train")
    for batch in shard.iter_torch_batches(
            batch_size=settings.batch_size, device=device, local_shuffle_buffer_size=SHUFFLE_ROWS,
            local_shuffle_seed=settings.seed + 1000 * epoch + rank):
        if len(batch["image"]) < 2:  # BatchNorm needs two samples; shards are equal: all skip
            continue
        weights = batch.get(column.replace("target_", "weight_"))
        inputs, targets, *flipped = paired_augment(batch["image"], batch[column], generator,
                                                   extras=() if weights is None else (weights,))
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast(device, settings.bf16):
            logits = model(inputs)
        loss_sum, valid = segmentation_loss(logits, targets, flipped[0] if flipped else None)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / valid.clamp(min=1)).backward()
        optimizer.step()
        totals[0] += loss_sum.item()
        totals[1] += float(valid)
        totals[2] += float(((targets > 0) & (targets != 255)).sum())
        totals[3] += len(targets)
    return totals


def evaluate(module, dataset_name: str, settings: TrainSettings, device) -> tuple[dict, list]:
    """This rank's meters (one per target column: ``target``, and ``gt_target`` when the val
    set carries it) and [loss sum, valid pixels] against ``target``, on an unsharded eval set."""
    module.eval()
    meters = {column: SegmentationMeter(settings.num_classes) for column in settings.val_columns}
    sums = [0.0, 0.0]
    for batch in eval_batches(dataset_name, settings.eval_batch_size, device):
        logits = predict_logits(module, batch["image"], device, settings.bf16, device.type == "cuda")
        for column, meter in meters.items():
            loss_sum, valid = score_logits(logits, batch[column], meter, settings.background)
            if column == "target":
                sums[0] += loss_sum
                sums[1] += valid
    return meters, sums


def val_scores(meter: SegmentationMeter, settings: TrainSettings, prefix: str) -> dict[str, float]:
    """A val meter merged across ranks as metrics: the binary view, mIoU with several classes,
    and the images scored."""
    result = meter.reduce_from_all_processes().result(settings.class_names, settings.background)
    return {**flat_metrics(result, prefix), **({f"{prefix}miou": result["miou"]} if "miou" in result else {}),
            f"{prefix}images": result["images"]}


def run_epoch(model, module, optimizer, settings: TrainSettings, epoch: int, device) -> dict[str, Any]:
    """Train one epoch, score val; the epoch's metrics, identical on every rank."""
    started = time.perf_counter()
    index, _ = _column(settings, epoch)
    train = train_epoch(model, optimizer, settings, epoch, device)
    seconds = time.perf_counter() - started
    meters, val_sums = evaluate(module, "val", settings, device)
    loss, valid, foreground, images, val_loss, val_valid = all_reduce_sums(train + val_sums, device)
    row = {"epoch": epoch, "label_source": settings.source_name(index), "label_step": index,
           "train_loss": loss / max(valid, 1), "train_foreground_fraction": foreground / max(valid, 1),
           "train_images": int(images), "train_images_per_s": images / max(seconds, 1e-9),
           "lr": optimizer.param_groups[0]["lr"], "val_loss": val_loss / max(val_valid, 1),
           **val_scores(meters["target"], settings, "val_")}
    if "gt_target" in meters:  # diagnostics only: never chooses a checkpoint or steers the LR
        row.update({k: v for k, v in val_scores(meters["gt_target"], settings, "val_gt_").items()
                    if k != "val_gt_images"})
    return row


def _best_reported(metric: str):
    """The kept checkpoint with the highest ``metric`` (``TrainSettings.best_metric``); the
    latest among ties, as Train keeps them."""

    def key(reported):
        score = reported.metrics.get(metric, float("nan"))
        return (-math.inf if math.isnan(score) else score, reported.metrics.get("epoch", 0))

    return max(reported_checkpoints(), key=key)


def evaluate_test(module, settings: TrainSettings, device) -> tuple[dict[str, SegmentationMeter], Any]:
    """Score each test prediction once per border policy the truth has (one meter each; class
    maps without a trimap border have one) and keep the configured policy's per-image
    [tp, fp, fn, tn] by test row; both merged across ranks."""
    import numpy as np

    module.eval()
    meters = {policy: SegmentationMeter(settings.num_classes) for policy in settings.test_policies}
    per_image = np.zeros((settings.test_images, 4), np.int64)
    for batch in eval_batches("test", settings.eval_batch_size, device):
        logits = predict_logits(module, batch["image"], device, settings.bf16, device.type == "cuda")
        predictions, rows = predicted_classes(logits, settings.background).cpu().numpy(), batch["index"].cpu().numpy()
        for policy, meter in meters.items():
            truth = batch[f"truth__{policy}"].cpu().numpy()
            for row, prediction, target in zip(rows, predictions, truth):
                counts = meter.update(prediction, target)
                if policy == settings.border_policy:
                    per_image[row] = counts
    merged = {policy: meter.reduce_from_all_processes() for policy, meter in meters.items()}
    # each row is scored on exactly one rank, so a sum across ranks fills in every row
    totals = all_reduce_sums(per_image.reshape(-1).astype(np.float64).tolist(), device)
    return merged, np.rint(np.asarray(totals)).astype(np.int64).reshape(per_image.shape)


def test_best(module, settings: TrainSettings, device) -> dict[str, Any]:
    """Load the best checkpoint on every rank and score the test set with it (every border
    policy, plus per-image counts under the configured one; with several classes, per-class
    IoU and mIoU too)."""
    best = _best_reported(settings.best_metric)
    state = load_state(best.checkpoint)
    module.load_state_dict(state["model"])
    meters, per_image = evaluate_test(module, settings, device)
    by_policy = {policy: meter.result() for policy, meter in meters.items()}
    test = meters[settings.border_policy].result(settings.class_names, settings.background)
    return {"test": test, "test_by_policy": by_policy, "test_per_image": per_image.tolist(),
            "tested_checkpoint": best.checkpoint.path, "tested_epoch": state["epoch"]}


def _payload(module, optimizer, scheduler, settings: TrainSettings, history: list[dict]) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "model_name": settings.model.name,
            "model_options": dict(settings.model.options), "image_size": settings.image_size,
            "border_policy": settings.border_policy, "labels": settings.labels,
            "classes": settings.outputs,
            "class_names": list(settings.class_names) if settings.class_names else None,
            "epoch": history[-1]["epoch"], "history": history, "model": module.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


def train_loop(settings: TrainSettings) -> dict[str, Any]:
    """Per-worker loop: resume, train and report every epoch, then test the best checkpoint."""
    import torch

    started = time.perf_counter()
    rank, _ = rank_and_world()
    device = worker_device()
    seed_everything(settings.seed)  # same init everywhere (DDP also broadcasts rank 0's)
    model = settings.model.create(settings.weights, settings.outputs)
    state = restore_state()
    if state is not None:
        model.load_state_dict(state["model"])
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model = prepare_model(model)
    module = getattr(model, "module", model)  # evaluation bypasses DDP: ranks differ in batches
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE)
    history: list[dict] = []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
    started_at = len(history) + 1
    timings = {"setup_seconds": time.perf_counter() - started}
    for epoch in range(started_at, settings.epochs + 1):
        _maybe_fail(settings, epoch, rank)
        epoch_started = time.perf_counter()
        row = run_epoch(model, module, optimizer, settings, epoch, device)
        row["attempt_started_at"] = started_at  # > 1 when this epoch ran after a resume
        scheduler.step(row["val_loss"])
        history.append(row)
        report(row, _payload(module, optimizer, scheduler, settings, history))
        timings[f"epoch_{epoch}_seconds"] = time.perf_counter() - epoch_started
    test_started = time.perf_counter()
    outcome = test_best(module, settings, device)
    report({"epoch": settings.epochs, "tested_epoch": outcome["tested_epoch"],
            **flat_metrics(outcome["test"], "test_"), "test_images": outcome["test"]["images"],
            **({"test_miou": outcome["test"]["miou"]} if "miou" in outcome["test"] else {})})
    timings["test_seconds"] = time.perf_counter() - test_started
    return {"history": history, "timings": timings, **outcome}
