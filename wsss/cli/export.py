"""``wsss export``: one mask set as indexed PNGs, COCO or Label Studio tasks, for people to
review (``wsss.masks.export``; that module's docstring says how to serve images to Label Studio)."""

from __future__ import annotations

import argparse

from wsss import console
from wsss.cli.common import EXIT_OK, UsageError, add_config_arguments, study_config
from wsss.data.prepare import prepare_dataset
from wsss.formats.labelstudio import LOCAL_FILES_ROOT
from wsss.masks.export import FORMATS, SELECT_BY, SORTS, export_mask_set
from wsss.masks.plan import agreement_sets, labeler_context, open_study_mask_set
from wsss.train.classifier import find_classifier

SPLITS = {"trainval": ("trainval",), "test": ("test",), "all": ("trainval", "test")}


def cmd_export(args: argparse.Namespace) -> int:
    """Open the set (and the others it is compared with), export it, say what was written."""
    config = study_config(args)
    config.labeler(args.labeler)  # an unknown id fails here, naming the configured ones
    dataset = prepare_dataset(config.data)
    context = labeler_context(config, find_classifier(config, dataset))
    mask_set = open_study_mask_set(config, dataset, context, args.labeler, args.threshold)
    if args.threshold is not None and mask_set.kind != "heatmaps":
        raise UsageError(f"--threshold applies to heatmap sets only; {args.labeler!r} stores its masks "
                         f"already cut ({mask_set.kind}), so a threshold would change nothing")
    others = agreement_sets(config, dataset, context, args.labeler)
    try:
        result = export_mask_set(mask_set, dataset, dataset.split(*SPLITS[args.split]), args.format,
                                 args.out, others=others, sort=args.sort, image_root=args.image_root,
                                 select=args.select, by=args.by, seed=args.seed,
                                 split_instances=args.instances)
    except ValueError as error:  # a malformed --select, --by disagreement without other sets, --instances
        raise UsageError(str(error)) from None
    missing = f", {len(result.not_in_set)} not in the set" if result.not_in_set else ""
    chosen = f", the {args.select} chosen by {args.by}" if args.select is not None else ""
    console.echo(f"wrote {result.images} masks of {args.labeler} ({args.format}, {args.split}{missing}"
                 f"{chosen}) to {result.out}")
    if args.select is not None:
        console.echo(f"the choice is recorded in {result.files[-1]}")
    return EXIT_OK


def add_parser(verbs) -> argparse.ArgumentParser:
    """``export --config C --labeler ID --format F --out PATH [--threshold T] [--sort S] ...``."""
    parser = verbs.add_parser("export", help="write one mask set as PNGs, COCO or Label Studio tasks")
    add_config_arguments(parser, "pipeline.store=masks")
    parser.add_argument("--labeler", required=True, help="labeler id of the mask set")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="png (a folder), coco or labelstudio (a JSON file)")
    parser.add_argument("--out", required=True, help="folder (png) or JSON file (coco, labelstudio)")
    parser.add_argument("--threshold", type=float, help="cut a heatmap set here (default: its own)")
    parser.add_argument("--sort", default="id", choices=SORTS,
                        help="image order: id (default), or confidence, least certain first")
    parser.add_argument("--image-root", default=LOCAL_FILES_ROOT,
                        help=f"labelstudio: URL prefix of the dataset root (default {LOCAL_FILES_ROOT})")
    parser.add_argument("--select", metavar="K",
                        help="write only the K images most worth a review: a count (30) or a share (10%%)")
    parser.add_argument("--by", default="confidence", choices=SELECT_BY,
                        help="how --select chooses: confidence (least confident first, default), "
                             "disagreement (most disagreed on by another set), random (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="--by random: the draw's seed (recorded)")
    parser.add_argument("--instances", action="store_true",
                        help="coco: an annotation per connected piece of each class (one per animal) "
                             "instead of one per class")
    parser.add_argument("--split", default="all", choices=tuple(SPLITS), help="which images (default all)")
    parser.set_defaults(handler=cmd_export)
    return parser
