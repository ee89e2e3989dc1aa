"""Make a study's dataset ready: generate the synthetic set when configured, then index it.

``data`` is a study's data section (``wsss.config.DataConfig``); this package does not import
the config, so that everything else can build on data.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wsss.data.index import index
from wsss.data.records import DatasetIndex
from wsss.data.synthetic import synthesize
from wsss.data.synthetic.layouts import layout_present, synthesize_layout
from wsss.data.synthetic.scenes import write_scenes


def ensure_synthetic(data) -> bool:
    """Write the synthetic dataset at ``data.root`` in ``data.format`` when configured and
    missing; True if written."""
    root = Path(data.root)
    if data.synthetic is None or layout_present(root, data.format, data.manifest):
        return False
    synth = data.synthetic
    kind = "scenes of several classes" if getattr(synth, "scenes", False) else "images"
    print(f"writing a synthetic dataset at {root} ({synth.images} {kind}, {synth.size} px, "
          f"{data.format})", file=sys.stderr, flush=True)
    if data.format == "oxford-pets":
        synthesize(root, images=synth.images, size=synth.size, seed=synth.seed, progress=True)
    elif getattr(synth, "scenes", False):
        write_scenes(root, data.format, synth.images, synth.size, synth.seed, masks=synth.masks)
    else:
        synthesize_layout(root, data.format, synth.images, synth.size, synth.seed, masks=synth.masks)
    return True


def prepare_dataset(data) -> DatasetIndex:
    """The study's dataset index, generating or downloading the data first where configured."""
    ensure_synthetic(data)
    dataset = index(data.root, format=data.format, manifest=data.manifest, classes=data.classes,
                    val_fraction=data.val_fraction, test_fraction=data.test_fraction,
                    split_seed=data.split_seed, limit=data.limit, download_if_missing=data.download,
                    task=data.task)
    dataset.background = data.background
    return dataset


def describe_data(dataset: DatasetIndex) -> str:
    """The data stage's line: what was read, and whether there is ground truth to score with."""
    splits = ", ".join(f"{name} {len(dataset.split(name))}" for name in ("train", "val", "test"))
    truth = "with ground truth (scoring only)" if dataset.has_truth else "no ground truth: nothing is scored"
    return (f"✓ data: {dataset.root} ({dataset.format}), {len(dataset.records)} images, "
            f"{len(dataset.classes)} classes ({splits}), {len(dataset.quarantine)} quarantined; {truth}")
