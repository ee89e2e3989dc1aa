"""The Ray Train worker loop of the classifier (DDP): resume from the latest checkpoint, train
on this worker's shard, score val (accuracy, or mAP and F1 for several classes per image with
``wsss.train.multilabel``), report every epoch. The driver side is ``wsss.train.classifier``.
"""

from __future__ import annotations

from wsss.data.transforms import batch_to_input
from wsss.models.classifier import build_classifier
from wsss.train import multilabel
from wsss.train.common import (
    all_reduce_sums,
    autocast,
    eval_batches,
    rank_and_world,
    report,
    restore_state,
    seed_everything,
    worker_device,
)
from wsss.train.settings import ClassifierSettings

SHUFFLE_ROWS = 512  # local shuffle buffer per worker (rows)


def train_epoch(model, optimizer, settings: ClassifierSettings, epoch: int, device, generator) -> list[float]:
    """One pass over this worker's shard: [loss sum, correct, images]."""
    import ray.train
    import torch.nn.functional as F

    model.train()
    rank, _ = rank_and_world()
    totals = [0.0, 0.0, 0.0]
    shard = ray.train.get_dataset_shard("train")
    for batch in shard.iter_torch_batches(batch_size=settings.batch_size, device=device,
                                          local_shuffle_buffer_size=SHUFFLE_ROWS,
                                          local_shuffle_seed=settings.seed + 1000 * epoch + rank):
        labels = batch["label"]
        if len(labels) < 2:  # BatchNorm needs two samples; shards are equal, so all ranks skip
            continue
        inputs = batch_to_input(batch["image"], train=True, generator=generator)
        with autocast(device):
            logits = model(inputs)
        if settings.multi_label:
            loss = multilabel.multilabel_loss(logits, batch["targets"])
            correct = multilabel.exact_matches(logits.detach().float(), batch["targets"])
        else:
            loss = F.cross_entropy(logits.float(), labels)
            correct = (logits.argmax(1) == labels).sum().item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals[0] += loss.item() * len(labels)
        totals[1] += correct
        totals[2] += len(labels)
    return totals


def evaluate(model, dataset_name: str, batch_size: int, device) -> list[float]:
    """This rank's [loss sum, correct, images] on an unsharded dataset (see eval_batches)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    totals = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for batch in eval_batches(dataset_name, batch_size, device):
            labels = batch["label"]
            with autocast(device):
                logits = model(batch_to_input(batch["image"], train=False)).float()
            totals[0] += F.cross_entropy(logits, labels, reduction="sum").item()
            totals[1] += (logits.argmax(1) == labels).sum().item()
            totals[2] += len(labels)
    return totals


def train_loop(settings: ClassifierSettings) -> list[dict]:
    """Per-worker loop: resume from the latest checkpoint, train, report every epoch."""
    import ray.train.torch
    import torch

    rank, _ = rank_and_world()
    device = worker_device()
    seed_everything(settings.seed)  # same init on every rank (DDP also broadcasts rank 0's)
    model = build_classifier(settings.backbone, settings.weights, settings.num_classes)
    state = restore_state()
    if state is not None:
        model.load_state_dict(state["model"])
    model = ray.train.torch.prepare_model(model)
    module = getattr(model, "module", model)  # evaluation bypasses DDP: ranks differ in batches
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    history: list[dict] = []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
    for epoch in range(len(history), settings.epochs):
        generator = torch.Generator(device=device)
        generator.manual_seed(settings.seed * 7919 + 1000 * epoch + rank)
        sums = train_epoch(model, optimizer, settings, epoch, device, generator)
        if settings.multi_label:
            sums += multilabel.evaluate(module, "val", settings.eval_batch_size, device,
                                        settings.num_classes)
            reduced = all_reduce_sums(sums, device)
            history.append(multilabel.history_row(epoch + 1, reduced[:3], reduced[3:], settings.num_classes))
        else:
            sums += evaluate(module, "val", settings.eval_batch_size, device)
            loss, correct, seen, val_loss, val_correct, val_seen = all_reduce_sums(sums, device)
            history.append({"epoch": epoch + 1, "train_loss": loss / max(seen, 1),
                            "train_accuracy": correct / max(seen, 1),
                            "val_loss": val_loss / max(val_seen, 1),
                            "val_accuracy": val_correct / max(val_seen, 1)})
        report(history[-1], {"model": module.state_dict(), "optimizer": optimizer.state_dict(),
                             "history": history})
    return history
