"""``wsss predict``: a trained segmentation checkpoint -> ``<image_id>.png`` masks {0, 255}.

Each image is resized to the checkpoint's training size, its logits are upsampled bilinearly
back to the image's original size and cut at 0 (probability 0.5), so ``wsss eval`` scores the
masks against the original trimaps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.arrays import resize_image
from wsss.data.decode import DecodeError, decode_image
from wsss.data.pets import Record
from wsss.models.segmentation import load_segmentation
from wsss.storage import writing
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


def predict_masks(checkpoint: str | os.PathLike, records: list[Record], out_dir: str | os.PathLike,
                  *, batch_size: int = PREDICT_BATCH, device: str = "cpu") -> dict[str, Any]:
    """Write one mask per decodable record at its original size; a summary with failures."""
    import torch
    import torch.nn.functional as F

    model, payload = load_segmentation(checkpoint, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed: dict[str, str] = {}
    written = 0
    for start in range(0, len(records), batch_size):
        kept, originals, resized = _decode_batch(records[start:start + batch_size],
                                                 payload["image_size"], failed)
        if not kept:
            continue
        logits = predict_logits(model, torch.as_tensor(resized), torch.device(device))
        for record, original, logit in zip(kept, originals, logits):
            full = F.interpolate(logit[None], size=original.shape[:2], mode="bilinear",
                                 align_corners=False)[0, 0]
            _write_png(((full > 0).cpu().numpy() * 255).astype(np.uint8),
                       out_dir / f"{record.image_id}.png")
            written += 1
    return {"written": written, "out": str(out_dir), "failed": failed,
            "model": payload["model_name"], "image_size": payload["image_size"]}
