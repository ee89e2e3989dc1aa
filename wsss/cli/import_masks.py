"""``wsss import``: reviewed masks (Label Studio export, COCO file, folder of PNGs) in as a mask
set a trial can lay over its pseudo-masks (``reviewed: <file>``; ``wsss.masks.reviewed``)."""

from __future__ import annotations

import argparse

from wsss import console
from wsss.cli.common import EXIT_OK, add_config_arguments, study_config
from wsss.data.prepare import prepare_dataset
from wsss.masks.reviewed import FORMATS, import_reviewed


def cmd_import(args: argparse.Namespace) -> int:
    """Import (or find the earlier import of) one reviewed file; one line per task left out."""
    config = study_config(args)
    dataset = prepare_dataset(config.data)
    with console.Stage("import", unit="tasks") as stage:
        def progress(done: int, total: int) -> None:
            stage.total = total
            stage.advance(done - stage.count)

        result = import_reviewed(config.pipeline.store, args.source, dataset, config.data.image_size,
                                 format=args.format, name=args.name, progress=progress)
        for problem in result.problems:
            console.say(f"  left out: {problem}")
        how = "the same file was imported before; reusing" if result.reused else "imported"
        stage.done(f"{how} {len(result.imported)} reviewed masks as {result.key}, "
                   f"{len(result.problems)} left out, {result.not_reviewed} not reviewed")
    console.echo(f"{result.key}: {result.mask_set.uri}")
    return EXIT_OK


def add_parser(verbs) -> argparse.ArgumentParser:
    """``import --config C --from FILE|FOLDER [--format F] [--name N]``."""
    parser = verbs.add_parser("import", help="reviewed masks (Label Studio, COCO, PNGs) in as a mask set")
    add_config_arguments(parser, "pipeline.store=masks")
    parser.add_argument("--from", dest="source", required=True,
                        help="a Label Studio JSON export, a COCO JSON file, or a folder of <image_id>.png")
    parser.add_argument("--format", default="auto", choices=FORMATS,
                        help="auto (default: a folder is png, a JSON list labelstudio, else coco)")
    parser.add_argument("--name", help="the set's name: reviewed-<name> (default: the file's name)")
    parser.set_defaults(handler=cmd_import)
    return parser
