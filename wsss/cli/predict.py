"""``wsss predict``: masks of a trained checkpoint at each image's own size."""

from __future__ import annotations

import argparse
import json
import sys

from wsss.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_PROBLEM, UsageError, add_format
from wsss.data.index import index
from wsss.train.predict import image_records, predict_masks


def cmd_predict(args: argparse.Namespace) -> int:
    """Run ``predict_masks`` on a folder of images or a dataset split; print a JSON summary.
    Exit 1 if an image failed."""
    if (args.images is None) == (args.root is None):
        raise UsageError("give --images DIR (any folder of images) or --root DIR (a dataset split)")
    if args.images is not None:
        records = image_records(args.images)
    else:
        records = index(args.root, format=args.format, manifest=args.manifest,
                        val_fraction=args.val_fraction, split_seed=args.split_seed).split(args.split)
    try:
        summary = predict_masks(args.checkpoint, records, args.out, device=args.device,
                                overlay=args.overlay, progress=True)
    except ValueError as error:  # not a segmentation checkpoint; missing ones: run_handler
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(summary, indent=2))
    return EXIT_PROBLEM if summary["failed"] else EXIT_OK


def add_parser(verbs) -> argparse.ArgumentParser:
    """``predict --checkpoint C --root DIR --out DIR [--split test]``."""
    parser = verbs.add_parser("predict", help="write predicted masks of a trained checkpoint")
    parser.add_argument("--checkpoint", required=True,
                        help="a `wsss train` checkpoint directory or its model file")
    parser.add_argument("--images", help="any folder of images (any depth, size and aspect)")
    parser.add_argument("--root", help="or a dataset root: predict on its --split")
    add_format(parser)
    parser.add_argument("--out", required=True, help="folder for <image_id>.png masks {0, 255}")
    parser.add_argument("--overlay", action="store_true", help="also draw each mask over its image")
    parser.add_argument("--split", default="test", help="train | val | test | trainval")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.set_defaults(handler=cmd_predict)
    return parser
