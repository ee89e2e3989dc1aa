"""``agree``: where two or more mask sets of the study agree; where they disagree, ignore.

Different generators (CAM thresholds, GrabCut, SAM2) err in different places, so a pixel on
which they agree is more likely right; training on such a set learns only where the generators
agree and leaves the rest to the network (the "ignore region" idea of the WSSS literature:
uncertain pixels get label 255 and no loss).

Per pixel, the sources that do not ignore it (value 0 or 1; 255 abstains) vote:

- foreground (1) where at least ``min_agree`` of the voters say foreground;
- background (0) where at least ``min_agree`` of the voters say background;
- ignore (255) otherwise, and where no source votes. ``min_agree`` is a fraction in [0.5, 1]
  (default 1.0: unanimity) compared to two decimals (0.67 means 2 of 3); at 0.5 a tie is
  ignore, since neither side wins it.

A second column, ``agreement`` (N x H x W float32 in [0, 1]), is the fraction of *all* sources
(abstainers count as not agreeing) that say the output label: a per-pixel loss weight for
later. It is 0 where the output is ignore. The pipeline keeps only ``mask``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from wsss.labelers.base import MASK_BACKGROUND, MASK_FOREGROUND, MASK_IGNORE, DerivedParams, Labeler
from wsss.labelers.registry import register

# Fractions are compared to two decimals, so 0.67 (as a config writes 2/3) accepts 2 votes of 3.
FRACTION_TOLERANCE = 0.005


class AgreementParams(DerivedParams):
    min_agree: float = Field(1.0, ge=0.5, le=1.0,
                             description="fraction of the voting sources that must share a label")

    @field_validator("sources")
    @classmethod
    def _two_or_more(cls, sources: list[str]) -> list[str]:
        if len(sources) < 2:
            raise ValueError(f"agree needs at least 2 mask sets, got {len(sources)}")
        if len(set(sources)) != len(sources):
            raise ValueError(f"agree lists a mask set twice: {sources}")
        return sources


def vote_counts(sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground votes, background votes), each N x H x W, of N x K x H x W source masks."""
    return (sources == MASK_FOREGROUND).sum(axis=1), (sources == MASK_BACKGROUND).sum(axis=1)


def agreed_masks(sources: np.ndarray, min_agree: float) -> tuple[np.ndarray, np.ndarray]:
    """N x H x W masks {0, 1, 255} and agreement fractions of N x K x H x W source masks."""
    foreground, background = vote_counts(sources)
    needed = (min_agree - FRACTION_TOLERANCE) * (foreground + background)
    voted = (foreground + background) > 0
    is_foreground = voted & (foreground >= needed) & (foreground > background)
    is_background = voted & (background >= needed) & (background > foreground)
    masks = np.full(foreground.shape, MASK_IGNORE, np.uint8)
    masks[is_foreground] = MASK_FOREGROUND
    masks[is_background] = MASK_BACKGROUND
    agreeing = np.where(is_foreground, foreground, np.where(is_background, background, 0))
    return masks, (agreeing / sources.shape[1]).astype(np.float32)


@register
class AgreementLabeler(Labeler):
    name = "agree"
    description = "agreement of two or more mask sets; pixels they disagree on are ignored"
    Params = AgreementParams
    stage = "cpu"

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images, sources = np.asarray(batch["image"]), np.asarray(batch["source_masks"])
        expected = (len(images), len(self.params.sources), *images.shape[1:3])
        if sources.shape != expected:
            raise ValueError(f"labeler {self.name!r}: source_masks {sources.shape}, expected {expected}")
        masks, agreement = agreed_masks(sources, self.params.min_agree)
        return {"mask": masks, "agreement": agreement}
