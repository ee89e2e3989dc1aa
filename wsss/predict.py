"""``wsss predict``: a trained segmentation checkpoint -> ``<image_id>.png`` masks {0, 255}.

Each image is resized to the checkpoint's training size, its logits are upsampled bilinearly
back to the image's original size and cut at 0 (probability 0.5), so ``wsss eval`` scores the
masks against the original trimaps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from wsss.data.pets import Record

PREDICT_BATCH = 16


def _write_png(mask: np.ndarray, path: Path) -> None:
    from PIL import Image

    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    Image.fromarray(mask, mode="L").save(temporary)
    os.replace(temporary, path)


def _decode_batch(records: list[Record], size: int, failed: dict[str, str]):
    """(records kept, original images, N x size x size x 3 resized batch); failures recorded."""
    from wsss.data.arrays import resize_image
    from wsss.data.decode import DecodeError, decode_image

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

    from wsss.models.segmentation import load_segmentation
    from wsss.training_steps import predict_logits

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


def add_predict_parser(verbs) -> argparse.ArgumentParser:
    """Add ``predict --checkpoint C --root DIR --out DIR [--split test]``."""
    parser = verbs.add_parser("predict", help="write predicted masks of a trained checkpoint")
    parser.add_argument("--checkpoint", required=True,
                        help="a `wsss train` checkpoint directory or its model file")
    parser.add_argument("--root", required=True, help="dataset root in the Oxford-IIIT Pet layout")
    parser.add_argument("--out", required=True, help="folder for <image_id>.png masks {0, 255}")
    parser.add_argument("--split", default="test", help="train | val | test | trainval")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.set_defaults(handler=cmd_predict)
    return parser


def cmd_predict(args: argparse.Namespace) -> int:
    """Run ``predict_masks`` on a split; print a JSON summary. Exit 1 if an image failed."""
    from wsss.data.pets import index

    records = index(args.root, val_fraction=args.val_fraction,
                    split_seed=args.split_seed).split(args.split)
    try:
        summary = predict_masks(args.checkpoint, records, args.out, device=args.device)
    except ValueError as error:  # not a segmentation checkpoint; missing ones: run_handler
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0
