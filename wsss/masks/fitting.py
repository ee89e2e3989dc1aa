"""Labelers fitted on the set before they label it (``Labeler.fits``: ``pixel_head``).

Before the graph runs, each such set that still misses images gets its fitted state: read from
the set's folder (``FIT_FILE``) when a head fitted for this very set (its fingerprint: labeler,
params, classifier, data, size) is there, else fitted here on the train and val images, their
image-level labels only (never a mask), and written there whole. The CPU stage then loads it
(``load_fitted``); a head for another set is an error, never reused.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from wsss import console, storage
from wsss.data.arrays import resize_image
from wsss.data.decode import DecodeError, decode_image
from wsss.data.records import DatasetIndex, Record
from wsss.labelers.entries import padded
from wsss.labelers.pixel_head import FIT_FILE

FIT_SPLITS = ("train", "val")  # the images a head learns from: never the test split


def fits(labeler: Any) -> bool:
    return bool(getattr(labeler, "fits", False))


def fit_location(uri: str) -> str:
    return storage.join(uri, FIT_FILE)


def fit_records(dataset: DatasetIndex, limit: int) -> list[Record]:
    """The train and val records a head is fitted on: all of them, or ``limit`` of them chosen
    by a hash of their ids (the same ones on every run over the same data)."""
    records = dataset.split(*FIT_SPLITS)
    ranked = sorted(records, key=lambda r: hashlib.sha256(r.image_id.encode()).hexdigest())
    return sorted(ranked[:limit], key=lambda r: r.image_id)


def decoded(records: list[Record], size: int, stage: console.Stage) -> tuple[np.ndarray, list[Record]]:
    """The records' images at ``size`` (as the decode stage makes them); undecodable ones left
    out (the pipeline quarantines them)."""
    images, kept = [], []
    for record in records:
        try:
            images.append(resize_image(decode_image(record.image_path), size))
            kept.append(record)
        except DecodeError:
            pass
        stage.advance(1)
    return (np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)), kept


def ensure_fitted(plans: list[Any], dataset: DatasetIndex, image_size: int) -> None:
    """Give every fitted-labeler plan with images to make its head (module doc)."""
    for plan in plans:
        if not fits(plan.labeler) or not plan.missing:
            continue
        location = fit_location(plan.uri)
        if storage.is_file(location):
            plan.labeler.load_fit(location, plan.fingerprint)  # a head for another set raises
            continue
        records = fit_records(dataset, plan.labeler.params.fit_images)
        if len(records) < 2:
            raise ValueError(f"labeler {plan.spec.key!r} fits on the train and val images, and the "
                             f"dataset has {len(records)}: it needs at least 2")
        with console.Stage(f"fit {plan.spec.key}", total=2 * len(records), unit="images") as stage:
            images, kept = decoded(records, image_size, stage)
            width = max(len(r.present) for r in kept)
            plan.labeler.fit(images, padded([r.present for r in kept], width),
                             padded([r.mask_classes for r in kept], width), progress=stage)
            plan.labeler.save_fit(location, plan.fingerprint)
            stage.done(f"head fitted on {len(kept)} train and val images ({plan.labeler.head_digest()})")


def load_fitted(labeler: Any, uri: str, fingerprint: str) -> Any:
    """``labeler`` with its set's fitted state loaded (a labeler that fits nothing as it is)."""
    if fits(labeler) and not labeler.fitted:
        labeler.load_fit(fit_location(uri), fingerprint)
    return labeler
