"""``wsss eval``: score a folder of predicted masks against the ground truth."""

from __future__ import annotations

import argparse

from wsss.cli.common import EXIT_OK, add_format, add_root, class_scores_lines, print_json
from wsss.data.index import index
from wsss.masks.scoring import evaluate_class_folder, evaluate_folder
from wsss.metrics import BORDER_POLICIES


def cmd_eval(args: argparse.Namespace) -> int:
    dataset = index(args.root, format=args.format, manifest=args.manifest, task=args.task)
    records = dataset.split(args.split)
    if args.task == "semantic":  # class maps against the class-indexed truth
        result = evaluate_class_folder(args.pred, records, dataset.classes)
        if args.json:
            print_json(result)
        else:
            print("\n".join(class_scores_lines(result)))
            print(f"{result['images']} images")
        return EXIT_OK
    result = evaluate_folder(args.pred, records, args.border_policy)
    if args.json:
        print_json(result)
    else:
        for aggregation in ("micro", "per_image"):
            values = "  ".join(f"{k} {v:.4f}" for k, v in result[aggregation].items())
            print(f"{aggregation:>9}: {values}")
        print(f"{result['images']} images, border policy {result['border_policy']}")
    return EXIT_OK


def add_parser(verbs) -> None:
    evaluate = verbs.add_parser("eval", help="score predicted masks against the ground truth")
    evaluate.add_argument("--pred", required=True, help="folder of <image_id>.png masks")
    add_root(evaluate)
    add_format(evaluate)
    evaluate.add_argument("--split", default="test", help="train | val | test | trainval")
    evaluate.add_argument("--border-policy", default="ignore", choices=BORDER_POLICIES)
    evaluate.add_argument("--task", default="binary", choices=("binary", "semantic"),
                          help="semantic: class maps (0 background, k + 1 class k) scored by mIoU")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_eval)
