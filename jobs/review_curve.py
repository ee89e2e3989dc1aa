"""What a review is worth, measured: K % of the training images reviewed (by confidence or at
random), a model trained on each, test Dice against the share reviewed.

    python jobs/review_curve.py --config jobs/configs/pets.yaml --set data.root=DIR \\
        --labels grabcut_seeds [--points 0,5,10,20,50] [--by confidence,random] [--seed 0] \\
        [--reviewed-weight 1] [--out results/review-curve]

Makes the study's classifier and mask sets where they are missing, ranks the base labels'
training images by confidence (``wsss export --sort confidence``), writes a reviewer folder per
point with the ground truth of the chosen images only (the stand-in for a person), then runs one
sweep (experiment ``<study>-review``): full supervision, no review, and a trial per point. Writes
``curve.md``, ``curve.png`` and ``curve.json`` to ``--out`` and logs them to the sweep's parent
run; ``wsss report`` draws the same curve from MLflow (``wsss.sweep.review_curve``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mlflow
from wsss import console, tracking
from wsss.cli.common import add_config_arguments, study_config
from wsss.data.prepare import prepare_dataset
from wsss.masks.pipeline import generate_masks
from wsss.masks.plan import labeler_context
from wsss.raycluster import ensure_ray
from wsss.report.review_gain import curve_markdown, curve_rows, plot_curve
from wsss.sweep.review_curve import (
    SELECTIONS,
    curve_config,
    labels_dice,
    note_selection,
    review_folders,
    scored_training_images,
    share_points,
)
from wsss.sweep.run import run_sweep
from wsss.sweep.sweep_log import children
from wsss.train.classifier import resolve_classifier


def reviewed_weight(text: str) -> float | str:
    return text if text == "balanced" else float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--labels", required=True, help="the pseudo-mask set reviewed (a labeler id)")
    parser.add_argument("--points", default="0,5,10,20,50", help="shares of the training images, percent")
    parser.add_argument("--by", default=",".join(SELECTIONS), help="confidence, random, disagreement (comma list)")
    parser.add_argument("--seed", type=int, default=0, help="the random selection's seed")
    parser.add_argument("--reviewed-weight", type=reviewed_weight, default="balanced",
                        help="loss weight of reviewed pixels: a number, or balanced (default: the "
                             "reviewed images weigh as much as all the others together)")
    parser.add_argument("--out", type=Path, default=Path("results/review-curve"))
    args = parser.parse_args(argv)
    console.setup(verbose_output=args.verbose)
    try:
        return run(args)
    finally:
        console.teardown()


def run(args: argparse.Namespace) -> int:
    config = study_config(args).resolved()
    config.labeler(args.labels)  # an unknown id fails here, naming the configured ones
    points, selections = share_points(args.points), [s.strip() for s in args.by.split(",") if s.strip()]
    ensure_ray()
    dataset = prepare_dataset(config.data)
    checkpoint = resolve_classifier(config)
    generate_masks(config, dataset, labeler_context(config, checkpoint))  # reused where made
    mask_set, images = scored_training_images(config, dataset, args.labels, checkpoint)
    out = args.out.resolve()
    folders = review_folders(mask_set, images, points, selections, args.seed, out / "reviews",
                             config.data.border_policy)
    note_selection(folders, len(images))
    every = labels_dice(mask_set, images, config.data.border_policy)
    console.say(f"  {args.labels}: its masks' Dice over all {len(images)} training images {every:.3f}")
    curve = curve_config(config, args.labels, folders, args.reviewed_weight)
    result = run_sweep(curve)
    rows = curve_rows(children(tracking.configure(curve.tracking), result["parent_run_id"]))
    for row in rows:  # how bad the masks each review replaced were (ground truth scores only)
        point = folders.get((row["by"], round(row["share"])))
        row["replaced_dice"] = point.replaced_dice if point else None
    table = curve_markdown(rows)
    files = [out / "curve.md", out / "curve.json", plot_curve(rows, out / "curve.png")]
    files[0].write_text(table + "\n")
    files[1].write_text(json.dumps({"labels": args.labels, "points": points, "by": selections,
                                    "seed": args.seed, "reviewed_weight": args.reviewed_weight,
                                    "training_labels_dice": every,
                                    "parent_run_id": result["parent_run_id"], "rows": rows}, indent=2))
    client = mlflow.MlflowClient()
    for path in files:
        client.log_artifact(result["parent_run_id"], str(path), "review_curve")
    console.echo(table)
    console.echo(f"curve: {files[2]}; table: {files[0]}; MLflow parent run {result['parent_run_id']}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
