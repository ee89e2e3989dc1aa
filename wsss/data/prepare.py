"""Make a study's dataset ready: generate the synthetic set when configured, then index it."""

from __future__ import annotations

import sys
from pathlib import Path

from wsss.config import DataConfig
from wsss.data.pets import DatasetIndex, index


def ensure_synthetic(data: DataConfig) -> bool:
    """Write the synthetic dataset at ``data.root`` when configured and missing; True if written."""
    root = Path(data.root)
    if data.synthetic is None or (root / "annotations" / "trainval.txt").is_file():
        return False
    from wsss.data.synthetic import synthesize

    synth = data.synthetic
    print(f"writing a synthetic dataset at {root} ({synth.images} images, {synth.size} px)",
          file=sys.stderr, flush=True)
    synthesize(root, images=synth.images, size=synth.size, seed=synth.seed, progress=True)
    return True


def prepare_dataset(data: DataConfig) -> DatasetIndex:
    """The study's dataset index, generating or downloading the data first where configured."""
    ensure_synthetic(data)
    return index(
        data.root,
        val_fraction=data.val_fraction,
        split_seed=data.split_seed,
        limit=data.limit,
        download_if_missing=data.download,
    )
