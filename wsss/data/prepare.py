"""Make a study's dataset ready: generate the synthetic set when configured, then index it.

``data`` is a study's data section (``wsss.config.DataConfig``); this package does not import
the config, so that everything else can build on data.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wsss.data.pets import DatasetIndex, index
from wsss.data.synthetic import synthesize


def ensure_synthetic(data) -> bool:
    """Write the synthetic dataset at ``data.root`` when configured and missing; True if written."""
    root = Path(data.root)
    if data.synthetic is None or (root / "annotations" / "trainval.txt").is_file():
        return False

    synth = data.synthetic
    print(f"writing a synthetic dataset at {root} ({synth.images} images, {synth.size} px)",
          file=sys.stderr, flush=True)
    synthesize(root, images=synth.images, size=synth.size, seed=synth.seed, progress=True)
    return True


def prepare_dataset(data) -> DatasetIndex:
    """The study's dataset index, generating or downloading the data first where configured."""
    ensure_synthetic(data)
    return index(
        data.root,
        val_fraction=data.val_fraction,
        split_seed=data.split_seed,
        limit=data.limit,
        download_if_missing=data.download,
    )
