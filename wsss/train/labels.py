"""Where training targets come from: ground-truth trimaps, a pseudo-mask set, or a schedule.

A label source has a ``name`` and ``targets(image_ids, size) -> N x size x size uint8`` in
{0 background, 1 foreground, 255 ignore}. A schedule is a list of (epochs, source) steps:
epoch ``e`` (1-based) trains on the step that covers it, e.g. the study's curriculum
``[(20, raw_box), (20, mix)]``. Targets of every distinct source are computed once, block by
block as the dataset is built, and reach the training workers as dataset columns
``target_<k>``, so switching source at an epoch needs no new dataset. A weakly supervised run
validates on its own labels (the schedule's last source) and reads ground truth only to score
test (``train.select``).

Nothing trains on a half-read mask: a mask set's files are checked against its manifest's
digests on the driver before any target is made (``MaskSetSource.verify``: when the source is
opened, for the train and val images, and again in ``absent`` for any image not checked yet),
so a damaged or missing file stops the run with a ``MaskSetError`` listing every one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from wsss.data.arrays import resize_mask
from wsss.identity import file_hash
from wsss.labelers.entries import padded
from wsss.labelers.registry import get_labeler_class
from wsss.masks.integrity import MaskSetError
from wsss.metrics import IGNORE, trimap_to_target
from wsss.models.checkpoints import load_segmentation
from wsss.storage import fetch
from wsss.train.steps import banded_class_map, class_probabilities, predict_logits

GROUND_TRUTH = "gt"


@runtime_checkable
class LabelSource(Protocol):
    """Training targets by image id, resized (nearest neighbour) to ``size`` x ``size``."""

    name: str

    def targets(self, image_ids: Sequence[str], size: int) -> np.ndarray: ...


@dataclass
class GroundTruthSource:
    """Trimaps under a border policy (the fully supervised baseline)."""

    trimaps: Mapping[str, np.ndarray]  # image_id -> trimap (1 pet, 2 background, 3 border);
    # a ``wsss.data.arrays.RowsById`` reads them from the decode cache where targets are made
    border_policy: str = "ignore"
    name: str = GROUND_TRUTH

    def targets(self, image_ids: Sequence[str], size: int) -> np.ndarray:
        return _stack([trimap_to_target(resize_mask(self.trimaps[i], size), self.border_policy)
                       for i in image_ids], size)


@dataclass
class ClassTruthSource:
    """Class-indexed ground truth (0 background, k class, 255 ignore): the fully supervised
    baseline of a study whose images carry several classes each."""

    classmaps: Mapping[str, np.ndarray]  # image_id -> class map (``RowsById(..., "classmaps")``)
    name: str = GROUND_TRUTH

    def targets(self, image_ids: Sequence[str], size: int) -> np.ndarray:
        return _stack([resize_mask(np.asarray(self.classmaps[i]), size) for i in image_ids], size)


@dataclass
class MaskSetSource:
    """Masks from the pseudo-mask store (``wsss.masks.store.open_mask_set``; thresholds at read time).

    An image the set lacks (its labeler quarantined it) becomes all-ignore: it adds nothing
    to the loss. ``missing`` lists such ids after ``targets``. A damaged file, or one the
    manifest lists that is gone, is a ``MaskSetError``: never trained on, never all-ignore.
    """

    mask_set: Any  # has .read(image_id) -> H x W uint8 {0, 1, 255}; a store's also .verify(ids)
    name: str
    missing: list[str] = field(default_factory=list)
    verified: set[str] = field(default_factory=set, repr=False)  # ids whose files checked out

    def verify(self, image_ids: Sequence[str]) -> None:
        """Check every file of ``image_ids`` not checked yet, each read once
        (``wsss.masks.store.MaskSet.verify``); MaskSetError listing the damaged or missing ones."""
        unchecked = [image_id for image_id in image_ids if image_id not in self.verified]
        check = getattr(self.mask_set, "verify", None)
        if check is not None and unchecked:
            check(unchecked)
        self.verified.update(unchecked)

    @property
    def version(self) -> str:
        """What identifies these masks: the set's fingerprint and the read-time threshold."""
        manifest = getattr(self.mask_set, "manifest", None)  # a store's set has one; an in-memory one not
        fingerprint = manifest.fingerprint if manifest is not None else None
        return (f"{fingerprint or ''}@{getattr(self.mask_set, 'threshold', None)}"
                f"/{getattr(self.mask_set, 'band', None)}")

    def absent(self, image_ids: Sequence[str]) -> list[str]:
        """The ids among ``image_ids`` this set has no mask for (asked of the store's listing),
        once their files checked out (``verify``: the driver asks this before training)."""
        self.verify(image_ids)
        ids = getattr(self.mask_set, "ids", None)
        if ids is None:
            return []
        present = ids()
        return [image_id for image_id in image_ids if image_id not in present]

    def targets(self, image_ids: Sequence[str], size: int) -> np.ndarray:
        masks = []
        for image_id in image_ids:
            try:
                masks.append(resize_mask(np.asarray(self.mask_set.read(image_id), np.uint8), size))
            except MaskSetError:
                raise  # a damaged file: the run stops, naming it (a FileNotFoundError too)
            except (FileNotFoundError, KeyError):
                self.missing.append(image_id)
                masks.append(np.full((size, size), IGNORE, np.uint8))
        return _stack(masks, size)


@dataclass
class ReviewedSource:
    """Reviewed masks laid over another source image by image: an image the reviewed set holds
    trains on its reviewed mask whole (its ignore pixels stay ignored; no pseudo-mask pixel
    reaches it), every other image keeps ``base``'s target. With ``weight`` > 1 a reviewed
    pixel's loss counts ``weight`` times a pseudo-mask pixel's (``weights``)."""

    reviewed: Any  # a MaskSet of wsss.masks.reviewed
    base: LabelSource
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.base.name}+{self.reviewed.manifest.labeler_id or 'reviewed'}"

    @property
    def version(self) -> str:
        return (f"{getattr(self.base, 'version', '')}+{self.reviewed.manifest.fingerprint or ''}"
                f"x{self.weight:g}")

    def held(self) -> set[str]:
        return set(self.reviewed.manifest.images or self.reviewed.ids())

    def absent(self, image_ids: Sequence[str]) -> list[str]:
        """Ids neither the reviewed set nor the base holds (trained as all-ignore), once the
        files of both for ``image_ids`` checked out (MaskSetError naming any damaged one)."""
        held = self.held()
        if hasattr(self.reviewed, "verify"):
            self.reviewed.verify([image_id for image_id in image_ids if image_id in held])
        base = self.base.absent(image_ids) if hasattr(self.base, "absent") else []
        return [image_id for image_id in base if image_id not in held]

    def targets(self, image_ids: Sequence[str], size: int) -> np.ndarray:
        held = self.held()
        targets = self.base.targets(image_ids, size).copy()
        for row, image_id in enumerate(image_ids):
            if image_id in held:
                targets[row] = resize_mask(np.asarray(self.reviewed.read(image_id), np.uint8), size)
        return targets

    def weights(self, image_ids: Sequence[str], size: int) -> np.ndarray | None:
        """uint8 per pixel, 255 = full: reviewed images full, the rest 255 / weight; None at 1."""
        if self.weight == 1.0:
            return None
        held = self.held()
        rows = [255 if image_id in held else int(round(255 / self.weight)) for image_id in image_ids]
        return np.broadcast_to(np.asarray(rows, np.uint8)[:, None, None], (len(rows), size, size)).copy()


SELF_TRAINING_PREFIX = "model:"  # a self-training source's version: the models' content hashes
ENSEMBLE_JOIN = "+"  # between the hashes of several models


@dataclass
class SelfTrainingSource:
    """Self-training: the previous round's model's predictions on the training (and val) images
    as the next round's labels. By default (``banded_class_map``) a pixel takes its class where
    the predicted probability is at least ``band[1]``, background where the class is below
    ``band[0]``, and is ignored in between: the model's own doubt is not taught back to it (the
    ignore band of the CAM family, for predictions). With ``seeds`` (sure background,
    probable, sure) the next labels are GrabCut on each image seeded by the model's
    probabilities of its classes (``grabcut_class_map``): the model has learnt where the object
    is across the whole set, and GrabCut puts the outline on the image's own colour edges, which
    a model trained on rough pseudo-masks blurs. One class or several, the rule is one.

    ``model_file`` may name several models (``train.self_training_models``: the previous
    round trained with as many seeds); their probabilities are averaged before the band or
    GrabCut reads them."""

    name: str
    model_file: str | tuple[str, ...]
    band: tuple[float, float]
    images: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)  # id -> S x S x 3
    background: bool = True  # False: no pixel is taken for background (data.background)
    # id -> the pixel classes the image carries (its image-level labels): with several classes a
    # prediction chooses among them (and the background) only; empty: among every class
    classes: Mapping[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    seeds: tuple[float, float, float] | None = None  # GrabCut's seeds; None: the band

    def __post_init__(self) -> None:
        self.model_files = (self.model_file,) if isinstance(self.model_file, str) else tuple(self.model_file)
        if not self.model_files:
            raise ValueError(f"self-training source {self.name!r} has no model")

    @property
    def version(self) -> str:
        """The previous models' content hashes (in order) and the band or GrabCut's seeds (the
        files' paths are in their runs)."""
        rule = (f"@{self.band[0]},{self.band[1]}" if self.seeds is None else  # GrabCut's params whole
                "@grabcut" + ",".join(f"{value:g}" for value in self.seeds)
                + f"/{seeded_grabcut(self.seeds, self.background).fingerprint()}")
        rule += "" if self.background else ",no-background"
        own = ",own-classes" if self.classes else ""
        hashes = ENSEMBLE_JOIN.join(file_hash(str(fetch(path))) for path in self.model_files)
        return f"{SELF_TRAINING_PREFIX}{hashes}{rule}{own}"

    def allowed(self, image_ids: Sequence[str], channels: int) -> np.ndarray | None:
        """N x ``channels`` bool: the channels each image may take (background, its classes)."""
        if not self.classes or channels == 1:
            return None
        out = np.zeros((len(image_ids), channels), bool)
        out[:, 0] = self.background
        for row, image_id in enumerate(image_ids):
            out[row, [k + 1 for k in self.classes[image_id] if k + 1 < channels]] = True
        return out

    def load(self) -> list[Any]:
        """The models, in order."""
        return [load_segmentation(fetch(path))[0] for path in self.model_files]

    def probabilities(self, models: Sequence[Any], images: np.ndarray, image_ids: Sequence[str]) -> np.ndarray:
        """The mean of the models' ``class_probabilities`` on a batch of images."""
        import torch

        total, allowed = None, None
        for model in models:
            logits = predict_logits(model, torch.as_tensor(images), torch.device("cpu"))
            if total is None:  # the images' channels, the same for every model
                allowed = self.allowed(image_ids, logits.shape[1])
            one = class_probabilities(logits, allowed)
            total = one if total is None else total + one
        return total / len(models)

    def targets(self, image_ids: Sequence[str], size: int) -> np.ndarray:
        models, out = self.load(), []
        for start in range(0, len(image_ids), 32):
            chunk = list(image_ids[start:start + 32])
            batch = np.stack([self.images[i] for i in chunk])
            probabilities = self.probabilities(models, batch, chunk)
            if self.seeds is None:
                masks = banded_class_map(probabilities, self.band, self.background)
            else:
                masks = grabcut_class_map(batch, probabilities, self.seeds, self.background,
                                          self.allowed(chunk, probabilities.shape[1]))
            out.extend(resize_mask(mask, size) for mask in masks)
        return _stack(out, size)


def grabcut_class_map(images: np.ndarray, probabilities: np.ndarray, seeds: tuple[float, float, float],
                      background: bool = True, allowed: np.ndarray | None = None) -> np.ndarray:
    """N x H x W class maps: GrabCut on each image from a model's probabilities of the image's
    classes (``class_probabilities``; ``seeds``: below the first sure background, from the
    second probable class, from the third sure class), through the ``grabcut`` labeler, as one
    entry per class.

    One output channel is one class (painting value 1). With several channels every class
    channel an image may take (``allowed``: its own classes and the background; all where None)
    is an entry."""
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.shape[1] == 1:
        maps = probabilities
        classes = np.zeros((len(images), 1), np.int64)
    else:
        keep = np.ones(probabilities.shape[:2], bool) if allowed is None else np.asarray(allowed, bool)
        classes = padded([np.flatnonzero(row[1:]).tolist() for row in keep])
        maps = np.zeros((*classes.shape, *probabilities.shape[2:]), np.float32)
        for n, row in enumerate(classes):
            for k, value in enumerate(row):
                if value >= 0:
                    maps[n, k] = probabilities[n, value + 1]
    return seeded_grabcut(seeds, background)({"image": np.asarray(images), "labels": classes,
                                              "classes": classes, "heatmap": maps})["mask"]


def seeded_grabcut(seeds: tuple[float, float, float], background: bool = True) -> Any:
    """The ``grabcut`` labeler that self-training runs on a model's probabilities."""
    sure_background, probable, sure = seeds
    return get_labeler_class("grabcut")({"init": "seeds", "seeds": [probable, sure],
                                         "sure_background": sure_background, "background": background})


def own_classes(dataset: Any) -> dict[str, tuple[int, ...]]:
    """Each image's pixel classes (its image-level labels), for self-training to choose among;
    {} where images carry one class each (there the model's one class is the image's)."""
    if not dataset.pixel_classes:
        return {}
    return {record.image_id: record.mask_classes for record in dataset.records}


def _stack(masks: list[np.ndarray], size: int) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, size, size), np.uint8)


@dataclass(frozen=True)
class Schedule:
    """Distinct sources (one target column each) and, per step, (last epoch, source index)."""

    sources: tuple[LabelSource, ...]
    steps: tuple[tuple[int, int], ...]

    def column(self, epoch: int) -> str:
        """The dataset column training reads at 1-based ``epoch``."""
        return f"target_{self.source_index(epoch)}"

    def source_index(self, epoch: int) -> int:
        return source_index(self.steps, epoch)

    def versions(self) -> list[str]:
        """Per source, what identifies its targets (e.g. a mask set's fingerprint)."""
        return [f"{source.name}={getattr(source, 'version', '')}" for source in self.sources]

    @property
    def final(self) -> LabelSource:
        """The source of the last step: the labels the model ends up fitting (and validates on)."""
        return self.sources[self.steps[-1][1]]

    def describe(self) -> str:
        """``gt`` for one source, else ``raw_box:20,mix:20`` (epochs per step)."""
        if len(self.steps) == 1:
            return self.sources[0].name
        previous, parts = 0, []
        for last, index in self.steps:
            parts.append(f"{self.sources[index].name}:{last - previous}")
            previous = last
        return ",".join(parts)


def source_index(steps: Sequence[tuple[int, int]], epoch: int) -> int:
    """Index of the source that trains 1-based ``epoch`` (steps: (last epoch, source index))."""
    for last, index in steps:
        if epoch <= last:
            return index
    raise ValueError(f"epoch {epoch} is past the schedule's last epoch {steps[-1][0]}")


def make_schedule(steps: Sequence[tuple[int, LabelSource]]) -> Schedule:
    """(epochs, source) steps -> a Schedule; a source used twice keeps one column."""
    sources: list[LabelSource] = []
    by_name: dict[str, int] = {}
    last, indexed = 0, []
    for epochs, source in steps:
        if epochs < 1:
            raise ValueError(f"schedule step {source.name!r} has {epochs} epochs; need >= 1")
        if source.name not in by_name:
            by_name[source.name] = len(sources)
            sources.append(source)
        last += epochs
        indexed.append((last, by_name[source.name]))
    return Schedule(tuple(sources), tuple(indexed))


def parse_labels(text: str) -> str | list[dict[str, Any]]:
    """``gt`` / ``MASKSET`` as is; ``raw_box:20,mix:20`` -> a schedule (``train.labels`` form)."""
    if ":" not in text:
        return text.strip()
    steps = []
    for part in text.split(","):
        key, _, epochs = part.partition(":")
        if not key.strip() or not epochs.strip().isdigit():
            raise ValueError(f"--labels {text!r}: expected KEY:EPOCHS[,KEY:EPOCHS...], got {part!r}")
        steps.append({"labels": key.strip(), "epochs": int(epochs)})
    return steps


def open_source(key: str, *, trimaps: dict[str, np.ndarray], border_policy: str,
                open_set: Callable[[str, float | None], Any], threshold: float | None = None,
                classmaps: Mapping[str, np.ndarray] | None = None) -> LabelSource:
    """``gt`` -> ground truth (class maps where given: several classes); any other key ->
    ``open_set(key, threshold)``: the study's mask set of that id
    (``wsss.masks.plan.open_study_mask_set``), its files checked for the images training
    reads, which are the ones ``trimaps`` (or ``classmaps``) hold: train and val."""
    if key == GROUND_TRUTH:
        return ClassTruthSource(classmaps) if classmaps is not None else GroundTruthSource(trimaps, border_policy)
    source = MaskSetSource(open_set(key, threshold), key)
    source.verify(list(classmaps if classmaps is not None else trimaps))
    return source


def resolve_schedule(labels: Any, epochs: int, **open_kwargs: Any) -> Schedule:
    """``train.labels`` (a key, a LabelSource, or steps of ScheduleStep / (epochs, key|source))
    -> a Schedule covering exactly ``epochs``; keys open through ``open_source``."""
    def as_source(item: Any) -> LabelSource:
        return open_source(item, **open_kwargs) if isinstance(item, str) else item

    if isinstance(labels, (str, LabelSource)) and not isinstance(labels, (list, tuple)):
        return make_schedule([(epochs, as_source(labels))])
    steps = []
    for step in labels:
        if isinstance(step, (tuple, list)):
            steps.append((int(step[0]), as_source(step[1])))
        elif isinstance(step, dict):
            steps.append((int(step["epochs"]), as_source(step["labels"])))
        else:  # wsss.config.ScheduleStep
            steps.append((step.epochs, as_source(step.labels)))
    total = sum(count for count, _ in steps)
    if total != epochs:
        raise ValueError(f"labels schedule covers {total} epochs but epochs is {epochs}")
    return make_schedule(steps)
