"""``wsss pseudo`` (a study's mask sets on Ray), ``wsss pseudo-eval`` (one labeler, in-process,
scored against ground truth) and ``wsss labelers`` (the registry)."""

from __future__ import annotations

import argparse
import json
import logging

from wsss import console, tracking
from wsss.cli.common import EXIT_OK, UsageError, add_config_arguments, add_format, class_scores_lines, study_config
from wsss.config import StudyConfig, load_config, parse_overrides
from wsss.data.index import index
from wsss.data.prepare import describe_data, prepare_dataset
from wsss.labelers.base import LabelerContext
from wsss.labelers.registry import get_labeler_class, list_labelers
from wsss.masks.pipeline import generate_masks
from wsss.masks.plan import labeler_context
from wsss.masks.scoring import pseudo_eval
from wsss.masks.set_log import log_mask_set
from wsss.metrics import BORDER_POLICIES
from wsss.raycluster import ensure_ray
from wsss.train.classifier import resolve_classifier


def cmd_pseudo(args: argparse.Namespace) -> int:
    """Generate (or finish, or mend) the selected mask sets, then score, log and print each."""
    config = study_config(args)
    labeler_ids = args.labeler or None
    checkpoint = resolve_classifier(config, labeler_ids)  # None when no selected set reads a CAM
    dataset = prepare_dataset(config.data)
    console.say(describe_data(dataset))
    ensure_ray()
    summary = generate_masks(config, dataset, labeler_context(config, checkpoint), labeler_ids)
    logging.getLogger(__name__).info("%s", summary.format())
    tracking.configure(config.tracking)
    records = dataset.split("trainval", "test")
    for plan in summary.plans:
        result = log_mask_set(plan, summary.plans, summary, config, records)
        quality = result["quality"]
        if not quality["images"]:
            scored = "no ground truth to score against"
        elif "miou" in quality:  # class maps: the class view
            scored = (f"pseudo-mask mIoU {quality['miou']:.4f}  pixel accuracy {quality['pixel_accuracy']:.4f}  "
                      f"class accuracy {quality['class_accuracy']:.4f}")
        else:
            scored = f"pseudo-mask Dice {quality['micro']['dice']:.4f}  IoU {quality['micro']['iou']:.4f}"
        console.echo(f"  {result['labeler_id']:<24} {scored}")
    return EXIT_OK


def cmd_pseudo_eval(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else StudyConfig()
    spec = next((s for s in config.labelers if s.key == args.labeler), None)
    name, params = (spec.name, dict(spec.params)) if spec else (args.labeler, {})
    params.update(parse_overrides(args.param, "--param"))
    context = LabelerContext(classifier_checkpoint=args.classifier or config.classifier.checkpoint,
                             allow_random_weights=args.random_weights or config.weights_policy == "random")
    dataset = index(args.root, format=args.format, manifest=args.manifest, limit=args.limit, task=args.task)
    records = dataset.split(args.split)
    semantic = args.task == "semantic"
    if semantic and not get_labeler_class(name).per_class:
        raise UsageError(f"labeler {name!r} makes one-class masks only; with --task semantic use "
                         f"{', '.join(n for n in list_labelers() if get_labeler_class(n).per_class)}")
    with get_labeler_class(name)(params, context) as labeler:
        result = pseudo_eval(labeler, records, args.size or config.data.image_size, args.border_policy,
                             classes=dataset.classes if semantic else None)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif semantic:
        print("\n".join(class_scores_lines(result)))
        print(f"{result['images']} images, labeler {name}")
    else:
        for aggregation in ("micro", "per_image"):
            print(f"{aggregation:>9}: " + "  ".join(f"{k} {v:.4f}" for k, v in result[aggregation].items()))
        print(f"{result['images']} images, labeler {name}, border policy {args.border_policy}")
    return EXIT_OK


def cmd_labelers(args: argparse.Namespace) -> int:
    for name, description in list_labelers().items():
        stage = get_labeler_class(name).stage
        print(f"{name:<16} [{stage:<7}] {description}")
    return EXIT_OK


def add_parser(verbs) -> None:
    """The ``pseudo``, ``pseudo-eval`` and ``labelers`` verbs."""
    pseudo = verbs.add_parser("pseudo", help="generate a study's mask sets on Ray (resumable)")
    add_config_arguments(pseudo, "pipeline.batch_size=32")
    pseudo.add_argument("--labeler", action="append", default=[], help="labeler id (repeatable)")
    pseudo.set_defaults(handler=cmd_pseudo)
    evaluate = verbs.add_parser("pseudo-eval", help="score one labeler's masks against ground truth")
    evaluate.add_argument("--labeler", required=True, help="registered name, or a labeler id in --config")
    evaluate.add_argument("--root", required=True)
    add_format(evaluate)
    evaluate.add_argument("--split", default="trainval")
    evaluate.add_argument("--config", help="take params, classifier and image size from a study config")
    evaluate.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--classifier", help="breed classifier checkpoint (for CAM-based labelers)")
    evaluate.add_argument("--size", type=int, help="working resolution (default: data.image_size)")
    evaluate.add_argument("--limit", type=int, help="at most this many images per split")
    evaluate.add_argument("--border-policy", default="ignore", choices=BORDER_POLICIES)
    evaluate.add_argument("--task", default="binary", choices=("binary", "semantic"),
                          help="semantic: every class of an image, class maps scored by mIoU")
    evaluate.add_argument("--random-weights", action="store_true",
                          help="allow random-init models (smoke tests only; results are meaningless)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_pseudo_eval)
    labelers = verbs.add_parser("labelers", help="list the registered pseudo-mask generators")
    labelers.set_defaults(handler=cmd_labelers)
