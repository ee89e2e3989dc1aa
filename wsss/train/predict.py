"""``wsss predict``: a trained segmentation checkpoint -> ``<image_id>.png`` masks {0, 255}.

Each image is resized to the checkpoint's training size, its logits are upsampled bilinearly
back to the image's original size and cut at 0 (probability 0.5), so ``wsss eval`` scores the
masks against the original trimaps. The images are a dataset split, or any folder of images of
any size and aspect (``image_records``); with ``overlay`` each mask is also drawn over its
image (``overlays/<image_id>.jpg``) for a quick look.

A checkpoint trained on several classes per image (``data.task: semantic``, C+1 outputs)
writes class maps instead: upsampled logits, the highest channel per pixel, as indexed PNGs
(0 background, k + 1 class k, PASCAL VOC's colours) with ``classes.json`` naming the values,
which ``wsss eval --task semantic`` reads.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.arrays import resize_image
from wsss.data.decode import DecodeError, decode_image
from wsss.data.imagefolder import IMAGE_EXTENSIONS, image_id_of, walk_images
from wsss.data.records import DatasetMissingError, Record
from wsss.formats import png
from wsss.models.checkpoints import load_segmentation
from wsss.panels import class_map_to_rgb
from wsss.storage import write_text, writing
from wsss.train.steps import predict_logits

PREDICT_BATCH = 16


def _write_png(mask: np.ndarray, path: Path) -> None:
    from PIL import Image

    with writing(path) as temporary:
        Image.fromarray(mask, mode="L").save(temporary)


def _decode_batch(records: list[Record], size: int, failed: dict[str, str]):
    """(records kept, original images, N x size x size x 3 resized batch); failures recorded."""
    kept, originals = [], []
    for record in records:
        try:
            originals.append(decode_image(record.image_path))
            kept.append(record)
        except DecodeError as error:
            failed[record.image_id] = error.reason
    resized = np.stack([resize_image(image, size) for image in originals]) if originals else None
    return kept, originals, resized


def image_records(folder: str | os.PathLike) -> list[Record]:
    """Every image below ``folder`` (any depth, junk passed over) as a record to predict on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetMissingError(f"--images {folder}: no such folder")
    paths = walk_images(folder, folder, [])
    if not paths:
        raise DatasetMissingError(f"--images {folder}: no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return [Record(image_id=image_id_of(path.relative_to(folder)), image_path=str(path),
                   trimap_path=None, label=0, class_name="", species=None, split="test")
            for path in paths]


def _overlay(image: np.ndarray, mask: np.ndarray, path: Path, several: bool = False) -> None:
    from PIL import Image

    picture = image.astype(np.float32)
    colour = class_map_to_rgb(mask)[mask > 0] if several else np.array([220.0, 0.0, 0.0])
    picture[mask > 0] = 0.55 * picture[mask > 0] + 0.45 * colour
    with writing(path) as temporary:
        Image.fromarray(picture.clip(0, 255).astype(np.uint8)).save(temporary, quality=90)


def predict_masks(checkpoint: str | os.PathLike, records: list[Record], out_dir: str | os.PathLike,
                  *, batch_size: int = PREDICT_BATCH, device: str = "cpu", overlay: bool = False,
                  progress: bool = False) -> dict[str, Any]:
    """Write one mask per decodable record at its original size; a summary with failures."""
    import torch
    import torch.nn.functional as F

    model, payload = load_segmentation(checkpoint, device)
    several = payload.get("classes", 1) > 1  # C+1 channels: several classes per image
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    written = 0
    for start in range(0, len(records), batch_size):
        if progress:
            print(f"predict: {start}/{len(records)} images", file=sys.stderr, flush=True)
        kept, originals, resized = _decode_batch(records[start:start + batch_size],
                                                 payload["image_size"], failed)
        if not kept:
            continue
        logits = predict_logits(model, torch.as_tensor(resized), torch.device(device))
        for record, original, logit in zip(kept, originals, logits):
            full = F.interpolate(logit[None], size=original.shape[:2], mode="bilinear",
                                 align_corners=False)[0]
            if several:
                mask = full.argmax(0).cpu().numpy().astype(np.uint8)
                png.write_class_map(str(out_dir / f"{record.image_id}.png"), mask)
            else:
                mask = ((full[0] > 0).cpu().numpy() * 255).astype(np.uint8)
                _write_png(mask, out_dir / f"{record.image_id}.png")
            if overlay:
                _overlay(original, mask, out_dir / "overlays" / f"{record.image_id}.jpg", several)
            written += 1
    summary = {"written": written, "out": str(out_dir), "failed": failed,
               "model": payload["model_name"], "image_size": payload["image_size"]}
    if several:
        names = payload.get("class_names") or [f"class-{k}" for k in range(payload["classes"] - 1)]
        legend = {"values": {"0": "background", **{str(k + 1): name for k, name in enumerate(names)}}}
        write_text(str(out_dir / "classes.json"), json.dumps(legend, indent=2))
        summary["classes"] = names
    return summary
