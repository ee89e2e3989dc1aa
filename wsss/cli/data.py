"""``wsss data check|synth``: check a dataset root, or write the synthetic one."""

from __future__ import annotations

import argparse

from wsss.cli.common import EXIT_OK, EXIT_PROBLEM, add_format, add_root, print_json
from wsss.data.check import check_report, format_report
from wsss.data.index import index
from wsss.data.records import TASKS
from wsss.data.synthetic import synthesize
from wsss.data.synthetic.layouts import LAYOUTS, synthesize_layout
from wsss.data.synthetic.scenes import SCENE_LAYOUTS, write_scenes


def cmd_data_check(args: argparse.Namespace) -> int:
    dataset = index(args.root, format=args.format, manifest=args.manifest,
                    val_fraction=args.val_fraction, split_seed=args.split_seed, task=args.task)
    report = check_report(dataset, args.error_budget, progress=not args.json)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return EXIT_OK if report["usable"] else EXIT_PROBLEM


def cmd_data_synth(args: argparse.Namespace) -> int:
    if args.scenes:
        if args.layout not in SCENE_LAYOUTS:
            raise SystemExit(f"--scenes writes --layout {' or '.join(SCENE_LAYOUTS)} (got {args.layout})")
        summary = write_scenes(args.root, args.layout, args.images, args.size, args.seed,
                               masks=not args.no_masks)
    elif args.layout == "oxford-pets":
        summary = synthesize(args.root, images=args.images, size=args.size, seed=args.seed,
                             progress=True)
    else:
        summary = synthesize_layout(args.root, args.layout, args.images, args.size, args.seed,
                                    masks=not args.no_masks, progress=True)
    print_json(summary)
    return EXIT_OK


def add_parser(verbs) -> None:
    data = verbs.add_parser("data", help="check a dataset root or write a synthetic one")
    actions = data.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="decode everything and report problems")
    add_root(check)
    add_format(check)
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--error-budget", type=float, default=0.01,
                       help="fraction of images allowed to fail (default 0.01)")
    check.add_argument("--val-fraction", type=float, default=0.2)
    check.add_argument("--split-seed", type=int, default=0)
    check.add_argument("--task", default="binary", choices=TASKS,
                       help="semantic: every class of an image (csv labels, every COCO category) "
                            "and class-indexed masks")
    check.set_defaults(handler=cmd_data_check)
    synth = actions.add_parser("synth", help="write a synthetic dataset in the same layout")
    add_root(synth)
    synth.add_argument("--images", type=int, default=200)
    synth.add_argument("--size", type=int, default=128)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--layout", default="oxford-pets", choices=("oxford-pets", *LAYOUTS),
                       help="write it as the study's dataset, class folders, a CSV or a COCO JSON")
    synth.add_argument("--no-masks", action="store_true", help="csv/coco: no ground truth")
    synth.add_argument("--scenes", action="store_true",
                       help="csv/coco: one to three animals of different classes per image, with "
                            "class-indexed masks (read with data.task: semantic)")
    synth.set_defaults(handler=cmd_data_synth)
