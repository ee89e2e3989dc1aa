"""What the driver hands each Ray Train worker of a segmentation run: one frozen dataclass.

It is pickled through Ray as is, so a worker reads named fields (``settings.lr``) and a field
the driver forgot to set fails when the settings are built, not deep inside an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsss.models.segmentation import ModelSpec

BEST_METRIC = "val_micro_dice"  # one class: Dice of the class against the rest
BEST_CLASS_METRIC = "val_miou"  # several classes: mean IoU over the classes (and background)


def best_metric(select: str, class_names: tuple[str, ...] | None) -> str:
    """The one rule that picks the tested checkpoint: the last epoch for ``select: last``, else
    the best val score against what val scores on (the run's own labels, or ground truth for
    ``val_gt``): mIoU with several classes, Dice of the class with one."""
    if select == "last":
        return "epoch"
    return BEST_CLASS_METRIC if class_names else BEST_METRIC


@dataclass(frozen=True)
class FailOnce:
    """Rank 0 raises once at ``epoch`` unless ``marker`` exists (``WSSS_TRAIN_FAIL_ONCE``, tests)."""

    epoch: int
    marker: str


@dataclass(frozen=True)
class TrainSettings:
    """A segmentation run as the workers see it (built by ``wsss.train.segmentation``)."""

    model: ModelSpec  # name and builder options
    weights: str
    select: str  # ``train.select`` resolved: last | val_labels | val_gt
    val_columns: tuple[str, ...]  # "target" (what selection reads), and "gt_target" if asked
    lr: float
    epochs: int
    batch_size: int  # per worker: train.batch_size is the global batch
    eval_batch_size: int
    seed: int
    bf16: bool
    image_size: int
    border_policy: str
    labels: str  # the label schedule described
    schedule: tuple[tuple[int, int], ...]  # (last epoch, source index) steps
    source_names: tuple[str, ...]
    test_images: int
    test_policies: tuple[str, ...]  # the border policies test is scored under (configured first)
    class_names: tuple[str, ...] | None = None  # several classes: C+1 outputs, class view
    background: bool = True  # False: every pixel is one of its image's classes (data.background)
    fail_once: FailOnce | None = None

    @property
    def best_metric(self) -> str:
        return best_metric(self.select, self.class_names)

    @property
    def num_classes(self) -> int:
        """C: the classes a pixel may take besides background (1 for the binary study)."""
        return len(self.class_names) if self.class_names else 1

    @property
    def outputs(self) -> int:
        """Model output channels: one logit for one class, C+1 scores for several."""
        return self.num_classes + 1 if self.class_names else 1

    def source_name(self, index: int) -> str:
        return self.source_names[index]


@dataclass(frozen=True)
class ClassifierSettings:
    """A classifier run as the workers see it (built by ``wsss.train.classifier``)."""

    backbone: str
    weights: str
    lr: float
    epochs: int
    batch_size: int
    eval_batch_size: int
    seed: int
    num_classes: int
    multi_label: bool  # several classes per image: a sigmoid per class, kept by val mAP
