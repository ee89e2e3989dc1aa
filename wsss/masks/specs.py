"""What crosses from the pipeline's driver to its tasks and actors: one frozen dataclass per mask
set (``StageSpec``) and per source set a labeler reads (``SourceRef``), pickled through Ray as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsss.labelers.base import ThresholdParams


@dataclass(frozen=True)
class SourceRef:
    """How a labeler that reads another mask set finds that set's masks in a batch: a mask
    column, or a heatmap column cut with the set's own threshold or band (as reading it would)."""

    id: str
    column: str
    cut: ThresholdParams | None = None  # heatmap sets only


@dataclass(frozen=True)
class StageSpec:
    """What a pipeline task needs of one mask set (``MaskSetPlan.to_stage``), pickled as is.
    Which images the set misses travels with each row (``todo``), not here: every task
    unpickles its stage's specs, so ids of the whole dataset in them made each batch's cost,
    and so the cost per image, grow with the set."""

    id: str
    name: str
    params: dict
    fingerprint: str
    uri: str
    kind: str  # "heatmaps" or "masks"
    heatmap_column: str | None = None
    sources: tuple[SourceRef, ...] = ()
