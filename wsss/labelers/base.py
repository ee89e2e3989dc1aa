"""The labeler interface: a batch of images and breed labels in, pseudo-masks out.

A labeler is called with the batch dict that Ray Data's ``map_batches`` passes (numpy arrays
keyed by column) and returns a dict of new columns. Keys it reads:

- ``image``: N x H x W x 3 uint8 RGB; ``label``: N int (breed 0..36); ``image_id``: N str;
- ``labels`` (several classes per image): N x K int, each image's
  classes, -1 padded;
- ``heatmap``: N x H x W float in [0, 1], for labelers built on a CAM (``needs_heatmap``);
- ``original`` (optional): the N decoded images at their own sizes, for labelers that work at
  each image's own size (SAM2); masks still come back at H x W;
- ``given_box`` (optional): N x 4 int32 boxes the dataset gives (a cheap label, like the class),
  scaled to H x W, -1s where an image has none; box labelers read it with ``box_source: dataset``;
- ``source_masks``: N x K x H x W uint8 {0, 1, 255}, for labelers that refine or combine other
  mask sets of the study (``sources``: their labeler ids, in that order): a CRF, an agreement of
  several generators, SAM2 prompted from a coarse mask. The pipeline runs the sources first.

Keys it returns: ``mask`` (N x H x W uint8: 0 background, 1 foreground, 255 ignore) and
whatever it made on the way (``heatmap``, ``box``, ``prompts``).

Labelers never see ground truth: ``__call__`` hands ``label_batch`` a copy of the batch that
holds only the keys in ``INPUT_KEYS``; trimaps, head boxes and anything else are dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wsss.identity import stable_hash
from wsss.labelers import entries
from wsss.labelers.registry import cam_methods, get_labeler_class

MASK_BACKGROUND, MASK_FOREGROUND, MASK_IGNORE = 0, 1, 255
INPUT_KEYS: frozenset[str] = frozenset({"image", "label", "labels", "classes", "image_id", "heatmap",
                                        "original", "given_box", "source_masks"})
NO_BOX = np.array([-1, -1, -1, -1], dtype=np.int32)


class LabelerParams(BaseModel):
    """Base of every labeler's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


# Fields added after sets were stored: at their default they hash as before (``Labeler.fingerprint``)
HASHED_ONLY_WHEN_SET: dict[str, Any] = {"background": True}


class BackgroundParams(LabelerParams):
    """Whether the data has a background: set from ``data.background`` by the study config."""

    background: bool = Field(True, description=(
        "false for data whose every pixel belongs to one of the image's classes (scenes of stuff "
        "and things, MSRC): a pixel no class clearly claims is ignored (255), never background; "
        "set from data.background"))


class DerivedParams(LabelerParams):
    """Params of a labeler built on other mask sets of the study (their labeler ids)."""

    sources: list[str] = Field(min_length=1, description="labeler ids whose masks this one reads")


class ThresholdParams(BackgroundParams):
    """Cut a heatmap into a mask: ``>= threshold``, or a band with an ignore zone."""

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    band: tuple[float, float] | None = Field(
        None, description="(t_lo, t_hi): >= t_hi foreground, < t_lo background, 255 between"
    )

    @model_validator(mode="after")
    def _ordered_band(self) -> ThresholdParams:
        if self.band is not None:
            lo, hi = self.band
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"band must satisfy 0 <= t_lo <= t_hi <= 1, got {self.band}")
        return self


class HeatmapView(LabelerParams):
    """How the classifier looks at an image for a heatmap: at which scales, mirrored or not.

    Each scale resizes the classifier's input side (``scale * image_size`` it was trained at);
    every view's map is normalised to [0, 1], brought to the image, summed, and the sum divided
    by its peak (so 0 still means no view saw the class there). A classifier's CAM at its
    training size marks the most discriminative part; smaller views see the whole animal in
    fewer cells, larger ones its edges in more.
    """

    scales: tuple[float, ...] = Field((1.0,), min_length=1, description=(
        "input sizes as fractions of the classifier's training size, e.g. [0.6, 1.0, 1.4]"))
    flip: bool = Field(False, description="also look at the mirrored image and average")

    @field_validator("scales")
    @classmethod
    def _sane_scales(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.1 <= scale <= 4.0 for scale in value):
            raise ValueError(f"scales {list(value)} must each lie in [0.1, 4]")
        return tuple(sorted(set(value)))

    def view_suffix(self) -> str:
        """'' for one plain view; else '@0.6,1,1.4+flip' (part of the heatmap's column key)."""
        if self.scales == (1.0,) and not self.flip:
            return ""
        return "@" + ",".join(f"{scale:g}" for scale in self.scales) + ("+flip" if self.flip else "")

    def view_params(self) -> dict:
        return {"scales": list(self.scales), "flip": self.flip}


class HeatmapRef(HeatmapView):
    """Which heatmap a CAM-based labeler builds on (method, target, and the views it averages)."""

    method: str = Field("gradcam", description="a registered heatmap method (cam_methods())")
    target: Literal["labelled", "predicted"] = "labelled"

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in cam_methods():
            raise ValueError(f"unknown heatmap method {value!r}; known: {', '.join(cam_methods())}")
        return value

    def key(self) -> str:
        return f"{self.method}-{self.target}{self.view_suffix()}"

    @classmethod
    def from_key(cls, key: str) -> HeatmapRef:
        """The ref whose ``key()`` is ``key``."""
        kind, _, view = key.partition("@")
        method, target = kind.split("-", 1)
        scales, flip = view.removesuffix("+flip"), view.endswith("+flip")
        parsed = [float(part) for part in scales.split(",")] if scales else [1.0]
        return cls(method=method, target=target, scales=parsed, flip=flip)

    def labeler_params(self) -> dict:
        """Params of the heatmap labeler that makes this heatmap."""
        return {"target": self.target, **self.view_params()}


@dataclass(frozen=True)
class LabelerContext:
    """What a labeler may load besides its params: weights and the device to run on."""

    classifier_checkpoint: str | None = None  # trained breed classifier (for every CAM)
    models_dir: str = "models"  # where SAM2 checkpoints are looked for
    device: str = "cpu"
    allow_random_weights: bool = False  # only when a config says weights_policy: random
    seed: int = 0


def cut_heatmap(best: np.ndarray, classes: np.ndarray | int, params: ThresholdParams) -> np.ndarray:
    """The one threshold rule: where the best map reaches the threshold the pixel takes its
    class (``classes``: per pixel, or one value), else background; with a band, maps between
    t_lo and t_hi leave the pixel ignored (255). Without a background (``params.background``
    false) what would be background is ignored: no class claims the pixel clearly."""
    classes = np.broadcast_to(np.asarray(classes, np.uint8), best.shape)
    below = MASK_BACKGROUND if params.background else MASK_IGNORE
    if params.band is None:
        return np.where(best >= params.threshold, classes, below).astype(np.uint8)
    lo, hi = params.band
    out = np.full(best.shape, MASK_IGNORE, np.uint8)
    out[best >= hi] = classes[best >= hi]
    out[best < lo] = below
    return out


def apply_threshold(heatmap: np.ndarray, params: ThresholdParams) -> np.ndarray:
    """One class's heatmap(s) in [0, 1] -> uint8 mask(s) {0, 1} or {0, 1, 255} with a band
    (``cut_heatmap`` with the class value 1)."""
    return cut_heatmap(np.asarray(heatmap, dtype=np.float32), MASK_FOREGROUND, params)


def class_map(heatmaps: np.ndarray, labels: list[int], params: ThresholdParams) -> np.ndarray:
    """K x H x W heatmaps of an image's K classes (``labels``, class indices) -> H x W uint8
    class map: each pixel takes the class whose map is highest there, or background where no
    map reaches the threshold (a constant background score, as in CAM-based WSSS); with a
    band, maps between t_lo and t_hi leave the pixel ignored (255). Values: 0 background,
    k + 1 for class index k (``cut_heatmap`` of the best map)."""
    heatmaps = np.asarray(heatmaps, np.float32)
    if heatmaps.ndim != 3 or len(heatmaps) != len(labels):
        raise ValueError(f"{len(labels)} classes for heatmaps of shape {heatmaps.shape}")
    if not len(labels):
        return np.zeros(heatmaps.shape[1:], np.uint8)
    classes = (np.asarray(labels, np.int64) + 1)[heatmaps.argmax(axis=0)].astype(np.uint8)
    return cut_heatmap(heatmaps.max(axis=0), classes, params)


def cut_heatmaps(heatmaps: np.ndarray, classes: np.ndarray, params: ThresholdParams) -> np.ndarray:
    """A batch's N x K x H x W heatmaps -> N x H x W class maps by the one rule (``class_map``
    of each image's maps; ``classes``: N x K pixel classes, -1 padded)."""
    heatmaps = np.asarray(heatmaps, np.float32)
    return np.stack([class_map(maps[:int((present >= 0).sum())], [int(k) for k in present if k >= 0], params)
                     for maps, present in zip(heatmaps, classes)]).reshape(len(heatmaps), *heatmaps.shape[2:])


class Labeler(ABC):
    """Base class: subclasses set ``name``, ``description``, ``Params`` and ``label_batch``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[LabelerParams]] = LabelerParams
    # Which pipeline stage runs it: "heatmap" (model actor), "cpu" (tasks), "sam2" (actor).
    stage: ClassVar[str] = "cpu"
    # Whether it makes class maps for images of several classes (a heatmap, box or prompt per
    # class); the others make one-class masks and the config says so where images carry several
    per_class: ClassVar[bool] = False

    def __init__(self, params: dict | LabelerParams | None = None,
                 context: LabelerContext | None = None):
        if isinstance(params, LabelerParams):
            params = params.model_dump()
        self.params = self.Params.model_validate(params or {})
        self.context = context or LabelerContext()
        self._heatmap_source: Labeler | None = None

    # -- what a subclass provides ------------------------------------------------------------

    @abstractmethod
    def label_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Masks (and by-products) for a batch holding only INPUT_KEYS."""

    def heatmap_ref(self) -> HeatmapRef | None:
        """The heatmap this labeler builds on, or None when it needs none."""
        ref = getattr(self.params, "heatmap", None)
        return ref if isinstance(ref, HeatmapRef) else None

    def weights_id(self) -> str:
        """Identity of the weights the labeler uses (a hash); '' when it uses none."""
        return ""

    def source_ids(self) -> list[str]:
        """The study's labeler ids whose masks it reads (``source_masks``), in order; [] for none.
        Their identities join this set's (``wsss.masks.plan.set_identity``)."""
        return list(getattr(self.params, "sources", None) or [])

    # -- shared behaviour --------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Hash of name, params and weights: equal fingerprints give identical masks."""
        upstream = self.heatmap_source().fingerprint() if self.heatmap_ref() else ""
        params = {key: value for key, value in self.params.model_dump(mode="json").items()
                  if not (key in HASHED_ONLY_WHEN_SET and value == HASHED_ONLY_WHEN_SET[key])}
        return stable_hash({"name": self.name, "params": params, "weights": self.weights_id(), "heatmap": upstream})

    def heatmap_source(self) -> Labeler:
        """The heatmap labeler for ``heatmap_ref()``, built once (used when called standalone)."""
        if self._heatmap_source is None:
            ref = self.heatmap_ref()
            if ref is None:
                raise RuntimeError(f"labeler {self.name!r} builds on no heatmap")
            cls = get_labeler_class(ref.method)
            self._heatmap_source = cls(ref.labeler_params(), self.context)
        return self._heatmap_source

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Masks and by-products of a batch in the one form (``entries.as_entries``), or in
        the short form of one-class batches, answered in the form it came in."""
        named = "label" in batch or "labels" in batch
        if not named and (self.stage == "heatmap" or (self.heatmap_ref() is not None and "heatmap" not in batch)):
            raise ValueError(f"labeler {self.name!r} takes the map of each image's class: the batch "
                             f"needs 'label' (one class per image) or 'labels'")
        visible, short = entries.as_entries({key: batch[key] for key in INPUT_KEYS if key in batch})
        if self.source_ids() and "source_masks" not in visible:
            raise ValueError(f"labeler {self.name!r} reads the masks of {self.source_ids()} "
                             f"(source_masks), and the batch carries none")
        if self.heatmap_ref() is not None and "heatmap" not in visible:
            visible["heatmap"] = self.heatmap_source()(visible)["heatmap"]
        if self.per_class:
            output = self.label_batch(visible)
        else:
            output = entries.entry_outputs(self.label_batch(entries.one_class_view(visible, self.name)))
        check_masks(output.get("mask"), visible["image"], self.name, visible["classes"])
        return entries.short_form(output) if short else output

    def close(self) -> None:
        """Release models and hooks (called once per worker at the end)."""
        if self._heatmap_source is not None:
            self._heatmap_source.close()

    def __enter__(self) -> Labeler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_masks(masks: np.ndarray | None, images: np.ndarray, name: str, classes: np.ndarray) -> None:
    """Raise when a labeler's masks are not N x H x W uint8 with values in {0, 255} and the
    values k + 1 of the batch's pixel classes ``classes`` (N x K, -1 padded)."""
    if masks is None:
        raise ValueError(f"labeler {name!r} returned no 'mask'")
    expected = tuple(images.shape[:3])
    if masks.shape != expected or masks.dtype != np.uint8:
        raise ValueError(f"labeler {name!r}: masks {masks.shape} {masks.dtype}, expected {expected} uint8")
    allowed = {MASK_BACKGROUND, MASK_IGNORE} | {int(k) + 1 for k in np.unique(classes) if k >= 0}
    extra = set(np.unique(masks).tolist()) - allowed
    if extra:
        raise ValueError(f"labeler {name!r}: mask values {sorted(extra)} outside {sorted(allowed)}")
