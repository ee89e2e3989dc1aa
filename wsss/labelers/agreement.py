"""``agree``: where two or more mask sets of the study agree; where they disagree, ignore.
``choose``: per image, whichever of some candidate sets agrees best with the vote of all.

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

Class maps vote the same way, by value: a pixel takes the class (or
background) that at least ``min_agree`` of its voters give and that more voters give than any
other value; two labels make the binary rule above.

``choose`` picks a whole mask per image instead of voting pixel by pixel: of its first
``candidates`` sources, the one whose mask has the highest mean IoU with the majority vote of
every source (``agree`` at ``min_agree`` 0.5). Generators that fail on different photos (the
breed classifier's CAM where the breed is hard, the ImageNet CAM where the pet is not what
ImageNet saw) are chosen between by what the other sets say, never by ground truth.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from wsss.labelers.base import MASK_IGNORE, DerivedParams, Labeler
from wsss.labelers.registry import register

# Fractions are compared to two decimals, so 0.67 (as a config writes 2/3) accepts 2 votes of 3.
FRACTION_TOLERANCE = 0.005


class AgreementParams(DerivedParams):
    min_agree: float = Field(1.0, ge=0.5, le=1.0,
                             description="fraction of the voting sources that must share a label")

    @field_validator("sources")
    @classmethod
    def _two_or_more(cls, sources: list[str]) -> list[str]:
        return distinct_sources("agree", sources, 2, "")


def distinct_sources(name: str, sources: list[str], least: int, why: str) -> list[str]:
    """``sources`` where they are ``least`` or more mask sets, none twice; else ValueError."""
    if len(sources) < least:
        raise ValueError(f"{name} needs at least {least} mask sets{why}, got {len(sources)}")
    if len(set(sources)) != len(sources):
        raise ValueError(f"{name} lists a mask set twice: {sources}")
    return sources


def source_masks(labeler: Labeler, batch: dict[str, np.ndarray]) -> np.ndarray:
    """The batch's N x K x H x W masks of the labeler's K sources; ValueError on another shape."""
    images, sources = np.asarray(batch["image"]), np.asarray(batch["source_masks"])
    expected = (len(images), len(labeler.params.sources), *images.shape[1:3])
    if sources.shape != expected:
        raise ValueError(f"labeler {labeler.name!r}: source_masks {sources.shape}, expected {expected}")
    return sources


def agreed_masks(sources: np.ndarray, min_agree: float) -> tuple[np.ndarray, np.ndarray]:
    """N x H x W masks and agreement fractions of N x K x H x W source masks: per pixel the
    value most voters give (0/1 foreground, or a class value of class maps; 255 abstains) where
    at least ``min_agree`` of the voters give it and it beats every other value; else 255."""
    sources = np.asarray(sources)
    values = [int(v) for v in np.unique(sources) if v != MASK_IGNORE]
    best = np.zeros(sources.shape[:1] + sources.shape[2:], np.int64)
    runner_up, winner = np.zeros_like(best), np.zeros(best.shape, np.uint8)
    voters = (sources != MASK_IGNORE).sum(axis=1)
    for value in values:
        votes = (sources == value).sum(axis=1)
        beats = votes > best
        runner_up = np.where(beats, best, np.maximum(runner_up, votes))
        winner = np.where(beats, np.uint8(value), winner)
        best = np.where(beats, votes, best)
    agreed = (voters > 0) & (best >= (min_agree - FRACTION_TOLERANCE) * voters) & (best > runner_up)
    masks = np.where(agreed, winner, MASK_IGNORE).astype(np.uint8)
    return masks, (np.where(agreed, best, 0) / sources.shape[1]).astype(np.float32)


@register
class AgreementLabeler(Labeler):
    name = "agree"
    description = "agreement of two or more mask sets; pixels they disagree on are ignored"
    Params = AgreementParams
    stage = "cpu"
    per_class = True  # class maps vote by value, as foreground and background do

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        masks, agreement = agreed_masks(source_masks(self, batch), self.params.min_agree)
        return {"mask": masks, "agreement": agreement}


class ChoiceParams(DerivedParams):
    candidates: int = Field(2, ge=2, description=(
        "the first this many sources are the candidates; every source (the candidates too) votes"))

    @field_validator("sources")
    @classmethod
    def _three_or_more(cls, sources: list[str]) -> list[str]:
        return distinct_sources("choose", sources, 3, " (two candidates and a third voice)")

    @field_validator("candidates")
    @classmethod
    def _candidates_among_sources(cls, candidates: int, info: ValidationInfo) -> int:
        sources = info.data.get("sources", [])
        if sources and candidates > len(sources):
            raise ValueError(f"{candidates} candidates, but only {len(sources)} sources")
        return candidates


def vote_agreement(candidate: np.ndarray, vote: np.ndarray) -> float:
    """Mean IoU of one image's candidate mask with the vote, over the values the vote gives
    (0/1, or the classes of a class map), on the pixels the vote does not ignore; 0 where the
    vote ignores every pixel."""
    voted = vote != MASK_IGNORE
    ious = []
    for value in np.unique(vote[voted]):
        mine, theirs = (candidate == value) & voted, vote == value
        ious.append((mine & theirs).sum() / max((mine | theirs).sum(), 1))
    return float(np.mean(ious)) if ious else 0.0


def chosen_masks(sources: np.ndarray, candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the candidate (one of the first ``candidates`` of N x K x H x W source
    masks) that agrees best with the majority vote of all K (``agreed_masks`` at one half; the
    first candidate on a tie): N x H x W masks and N candidate indices."""
    sources = np.asarray(sources)
    vote, _ = agreed_masks(sources, 0.5)
    choice = np.array([int(np.argmax([vote_agreement(sources[n, k], vote[n]) for k in range(candidates)]))
                       for n in range(len(sources))], np.int64)
    return sources[np.arange(len(sources)), choice], choice


@register
class ChoiceLabeler(Labeler):
    name = "choose"
    description = "per image, the candidate mask set that agrees best with the vote of all the sources"
    Params = ChoiceParams
    stage = "cpu"
    per_class = True  # class maps vote by value and are scored by their mean IoU with the vote

    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        masks, choice = chosen_masks(source_masks(self, batch), self.params.candidates)
        return {"mask": masks, "choice": choice}
