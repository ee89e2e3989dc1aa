"""The sections of a study config: data, classifier, labelers, pipeline, train, tracking.

Every model forbids unknown fields (``StrictModel``), so a typo fails before any work starts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from wsss.config.base import StrictModel
from wsss.config.paths import LocalPath
from wsss.labelers.registry import validate_params
from wsss.models.backbones import check_backbone_name
from wsss.models.segmentation import ModelSpec

BorderPolicy = Literal["ignore", "foreground", "background"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Select = Literal["auto", "last", "val_labels", "val_gt"]


def check_reviewed_weight(value: Any) -> Any:
    """A reviewed pixel weighs 1 to 100 pseudo-mask pixels, or ``balanced``."""
    if value is not None and value != "balanced" and not 1.0 <= float(value) <= 100.0:
        raise ValueError(f"reviewed_weight {value} is outside 1 to 100 (or use balanced)")
    return value


ReviewedWeight = Annotated[float | Literal["balanced"], AfterValidator(check_reviewed_weight)]


class SynthConfig(StrictModel):
    """Generate a synthetic dataset at ``data.root`` when it is missing."""

    images: int = Field(200, ge=1)
    size: int = Field(128, ge=32, le=2048)
    seed: int = 0
    masks: bool = Field(True, description="write ground truth where the layout can hold it (csv, "
                                          "coco, voc); an imagefolder never has masks")
    scenes: bool = Field(False, description="csv/coco/voc: scenes of one to three animals of different "
                                            "classes with class-indexed masks (for data.task: "
                                            "semantic) instead of one pet per image")


class DataConfig(StrictModel):
    root: LocalPath = "data/synthetic-pets"
    format: Literal["oxford-pets", "imagefolder", "csv", "coco", "voc"] = Field(
        "oxford-pets", description="how root is laid out: the study's dataset, class folders, a "
                                   "CSV manifest, a COCO JSON or a PASCAL VOC tree (docs/guide.md: "
                                   "your own images)")
    manifest: str | None = Field(None, description="csv: labels.csv, coco: annotations.json by "
                                                   "default; a path relative to root")
    classes: list[str] | None = Field(None, description="the class names and their order; default: "
                                                        "every class the data names, sorted")
    task: Literal["binary", "semantic"] = Field(
        "binary", description="binary: one foreground against background (the study); semantic: "
                              "every class of an image (csv labels, every COCO category), a mask "
                              "channel per class + background")
    synthetic: SynthConfig | None = None
    download: bool = False
    image_size: int = Field(256, ge=16, le=2048)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0, description=(
        "held out for test where the data gives no test split (oxford-pets gives one)"))
    split_seed: int = 0
    error_budget: Fraction = 0.01
    border_policy: BorderPolicy = "ignore"
    limit: int | None = Field(None, ge=1, description="use at most this many images per split")
    background: bool = Field(True, description=(
        "whether pixels may belong to no class of the image: false for scenes whose every pixel is "
        "one of the image's classes (stuff such as grass, sky, road around the objects: MSRC); "
        "class maps then take the best of the image's own classes or ignore, never a background, "
        "and mIoU is over the data's classes (`wsss data check` shows the truth's background share)"))

    @model_validator(mode="after")
    def _background_needs_classes(self) -> DataConfig:
        if not self.background and self.task != "semantic":
            raise ValueError("data.background: false needs data.task: semantic (one class per image "
                             "is a foreground against its background)")
        return self

    @model_validator(mode="after")
    def _scenes_layout(self) -> DataConfig:
        if self.synthetic is not None and self.synthetic.scenes and self.format not in ("csv", "coco", "voc"):
            raise ValueError(f"data.synthetic.scenes writes a csv, coco or voc dataset; data.format is "
                             f"{self.format!r}")
        return self

    @field_validator("root")
    @classmethod
    def _local_root(cls, value: str) -> str:
        # images are decoded by path on every node; an object store would need a copy step
        if "://" in value:
            raise ValueError("the dataset root must be a local path present on every node (a "
                             "shared filesystem such as EFS, or the same copy on each node); "
                             "object-store URIs are for the storage fields only")
        return value


class ScalingSection(StrictModel):
    num_workers: int = Field(1, ge=0)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    trainer: Literal["auto", "ray_train"] = Field(
        "auto", description="segmentation training with one worker: auto runs the loop in the "
        "process that holds the worker's resources (a sweep trial's own, or one Ray task), "
        "without Ray Train's controller and worker group; ray_train always starts Ray Train. "
        "Several workers always train in Ray Train (DDP)")


class ClassifierConfig(StrictModel):
    backbone: str = "resnet50"
    weights: LocalPath = Field("imagenet", description="none | imagenet | path to a checkpoint")
    checkpoint: LocalPath | None = Field(None, description="a trained breed classifier to use as is")
    epochs: int = Field(15, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    image_size: int = Field(256, ge=16, le=2048)
    seed: int = 0
    max_failures: int = Field(2, ge=0, description="worker failures Ray Train recovers from")
    scaling: ScalingSection = ScalingSection()
    storage: LocalPath = "results/classifier"

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return check_backbone_name(value)


class LabelerSpec(StrictModel):
    """One pseudo-mask generator of the study: a registered labeler and its parameters."""

    name: str
    id: str | None = Field(None, description="name of this mask set in the study; default: name")
    params: dict[str, Any] = {}
    _given: frozenset[str] = PrivateAttr(frozenset())  # the params the config names

    @model_validator(mode="after")
    def _validate_params(self) -> LabelerSpec:
        self._given = frozenset(self.params)
        self.params = validate_params(self.name, self.params)
        if self.id is None:
            self.id = self.name
        return self

    @property
    def key(self) -> str:
        return self.id or self.name

    @property
    def given(self) -> frozenset[str]:
        """The params the config names (the rest are the labeler's defaults)."""
        return self._given

    @property
    def sources(self) -> list[str]:
        """The labeler ids whose masks this one reads (a CRF, an agreement, a SAM2 refinement)."""
        return list(self.params.get("sources") or [])


class PipelineConfig(StrictModel):
    store: LocalPath = "stores/masks"
    batch_size: int = Field(16, ge=1)
    heatmap_actors: int | None = Field(None, ge=1, description="default: one per GPU, else 1")
    cpu_tasks: int | None = Field(None, ge=1, description="default: the cluster's CPUs")
    gallery_size: int = Field(8, ge=0)
    models_dir: LocalPath = Field("models", description="where SAM2 checkpoints are looked for "
                                                  "(sam2.1_hiera_<model>.pt)")


class ScheduleStep(StrictModel):
    epochs: int = Field(ge=1)
    labels: str


class TrainConfig(StrictModel):
    model: str = "deeplabv3"
    model_options: dict[str, Any] = Field(default_factory=dict, description=(
        "options of train.model, e.g. unet width; a trial or --model naming another model "
        "starts from none"))
    weights: LocalPath = Field("imagenet", description="none | imagenet (backbone; the study's) | "
                                                 "coco_voc (DeepLabV3/FCN, whole network) | path")
    labels: str | list[ScheduleStep] = "gt"
    threshold: Fraction | None = None
    select: Select = Field("auto", description=(
        "which checkpoint is tested and what steers the learning rate: last (the last epoch), "
        "val_labels (best val Dice against the run's own labels), val_gt (against ground "
        "truth: for supervised runs and diagnostics); auto is val_gt for labels gt, else "
        "val_labels, so a weakly supervised run reads no ground truth but to score test"))
    agreement: list[str] = Field(default_factory=list, description=(
        "mask set ids whose agreement with the training labels weights each pixel's loss"))
    edge_band: int = Field(0, ge=0, le=32, description=(
        "pixels within this many pixels of a boundary between two labels of a pseudo-mask are "
        "left out of the training loss (ground truth keeps its own); 0: none"))
    reviewed: LocalPath | None = Field(None, description=(
        "reviewed masks laid over the labels image by image: a Label Studio JSON export, a "
        "COCO file or a folder of <image_id>.png (wsss import); reviewed images train on the "
        "reviewed mask, the rest keep the pseudo-mask"))
    reviewed_weight: ReviewedWeight = Field(1.0, description=(
        "loss weight of a reviewed image's pixels relative to a pseudo-mask's (1 to 100), or "
        "balanced: the reviewed training images weigh as much as all the others together"))
    rounds: int = Field(1, ge=1, le=10, description=(
        "self-training: round k+1 trains on round k's model's predictions on the train and val "
        "images (1: no self-training)"))
    self_training_band: tuple[float, float] = Field(
        (0.3, 0.7), description="predicted probability below t_lo is background, at least t_hi "
                                "foreground, ignored in between")
    self_training: Literal["band", "grabcut"] = Field("band", description=(
        "how round k+1's labels come from round k's model: band, its confident pixels "
        "(self_training_band) with the rest ignored; grabcut, GrabCut on each image seeded by "
        "the model's probabilities of the image's classes (self_training_seeds), which snaps "
        "the model's outline to the image's colour edges"))
    self_training_seeds: tuple[Fraction, Fraction, Fraction] = Field(
        (0.1, 0.5, 0.9), description=(
            "self_training grabcut: a predicted probability below the first is sure background, "
            "from the second probable class and from the third sure class (GrabCut's seeds)"))
    self_training_models: int = Field(1, ge=1, le=8, description=(
        "self-training: every round before the last trains this many models, with seeds seed, "
        "seed + 1, ..., and the next round's labels come from their mean probability; the last "
        "round trains one model with seed"))
    val_gt_metrics: bool = Field(False, description=(
        "also score val against ground truth every epoch (val_gt_* metrics); never used to "
        "choose a checkpoint or steer training unless select is val_gt"))
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    image_size: int = Field(256, ge=16, le=2048)
    seed: int = 0
    bf16: bool = True
    max_failures: int = Field(2, ge=0)
    scaling: ScalingSection = ScalingSection()
    storage: LocalPath = "results/train"
    name: str | None = None

    def label_keys(self) -> list[str]:
        """The label source ids of ``labels``, in schedule order."""
        return label_keys(self.labels)

    def selection(self) -> str:
        """``select`` with ``auto`` resolved for these labels (``resolve_select``)."""
        return resolve_select(self.select, self.label_keys())

    def model_spec(self, model: str | None = None, options: dict | None = None) -> ModelSpec:
        """The model a run trains: ``train.model`` with ``train.model_options``, or a run's
        ``model``/``options`` overrides by ``ModelSpec.override``'s rule."""
        return ModelSpec(self.model, self.model_options).override(model, options)

    @model_validator(mode="after")
    def _models_need_rounds(self) -> TrainConfig:
        if self.self_training_models > 1 and self.rounds == 1:
            raise ValueError(f"self_training_models {self.self_training_models} averages the models "
                             "of one round for the next round's labels, so it needs rounds >= 2 "
                             "(or self_training_models: 1)")
        return self

    @model_validator(mode="after")
    def _seeds_ordered(self) -> TrainConfig:
        sure_background, probable, sure = self.self_training_seeds
        if not sure_background <= probable <= sure:
            raise ValueError(f"self_training_seeds {list(self.self_training_seeds)}: need sure "
                             "background <= probable <= sure")
        return self

    @model_validator(mode="after")
    def _schedule_matches_epochs(self) -> TrainConfig:
        if isinstance(self.labels, list):
            total = sum(step.epochs for step in self.labels)
            if total != self.epochs:
                raise ValueError(
                    f"labels schedule covers {total} epochs but epochs is {self.epochs}"
                )
        return self


def resolve_select(select: str, keys: list[str]) -> str:
    """``auto`` -> val_gt when every label source is ground truth, else val_labels: a weakly
    supervised run never chooses a checkpoint or steers its learning rate by ground truth."""
    if select != "auto":
        return select
    return "val_gt" if set(keys) == {"gt"} else "val_labels"


def label_keys(labels: str | list | None) -> list[str]:
    """Label source ids of a ``labels`` value: ``gt``, ``mix``, ``box:2,mix:2`` or schedule steps."""
    if labels is None:
        return []
    if isinstance(labels, str):
        return [part.split(":")[0].strip() for part in labels.split(",")]
    return [step["labels"] if isinstance(step, dict) else step.labels for step in labels]


class TrackingConfig(StrictModel):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_location: LocalPath = "mlflow/artifacts"
    experiment: str = "wsss"
    register_model: bool = Field(True, description="register every trained model in the MLflow "
                                                   "registry (a sweep's best gets the alias 'best')")
    model_name: str | None = Field(None, description="registered model name; default "
                                                     "<experiment>-segmentation")

    def registered_name(self) -> str:
        return self.model_name or f"{self.experiment}-segmentation"

    @field_validator("tracking_uri")
    @classmethod
    def _no_file_store(cls, value: str) -> str:
        if value.startswith("file:") or (value and "://" not in value):
            raise ValueError(
                "the file store is refused by MLflow 3; use sqlite:///path/to/mlflow.db "
                "or an http(s):// tracking server"
            )
        return value

