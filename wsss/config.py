"""Typed configuration for every stage of a study, loaded from YAML.

Every model forbids unknown fields, so a typo fails before any work starts, and every error
names the field's dotted path, the value given and what is allowed (see ``ConfigError``).
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from wsss.labelers.registry import get_labeler_class, list_labelers, validate_params
from wsss.models.backbones import check_backbone_name
from wsss.models.segmentation import check_model_options, list_models
from wsss.paper import paper_row

BorderPolicy = Literal["ignore", "foreground", "background"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Select = Literal["auto", "last", "val_labels", "val_gt"]
NAMED_WEIGHTS = ("none", "imagenet", "coco_voc")  # weights fields name these or a path


class IsPath:
    """Marks a field that names a local file or folder (or a URI): ``StudyConfig.resolved``
    makes every such field absolute, so a new path field cannot stay relative on Ray workers."""


LocalPath = Annotated[str, IsPath()]


def check_reviewed_weight(value: Any) -> Any:
    """A reviewed pixel weighs 1 to 100 pseudo-mask pixels, or ``balanced``."""
    if value is not None and value != "balanced" and not 1.0 <= float(value) <= 100.0:
        raise ValueError(f"reviewed_weight {value} is outside 1 to 100 (or use balanced)")
    return value


def _check_paper_row(value: str | None) -> str | None:
    try:
        paper_row(value)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    return value


ReviewedWeight = Annotated[float | Literal["balanced"], AfterValidator(check_reviewed_weight)]
PaperRow = Annotated[str | None, AfterValidator(_check_paper_row)]


class ConfigError(ValueError):
    """A configuration that cannot run; the message names each bad field and value."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class SynthConfig(StrictModel):
    """Generate a synthetic dataset at ``data.root`` when it is missing."""

    images: int = Field(200, ge=1)
    size: int = Field(128, ge=32, le=2048)
    seed: int = 0
    masks: bool = Field(True, description="write ground truth where the layout can hold it (csv, "
                                          "coco); an imagefolder never has masks")
    scenes: bool = Field(False, description="csv/coco: scenes of one to three animals of different "
                                            "classes with class-indexed masks (for data.task: "
                                            "semantic) instead of one pet per image")


class DataConfig(StrictModel):
    root: LocalPath = "data/synthetic-pets"
    format: Literal["oxford-pets", "imagefolder", "csv", "coco"] = Field(
        "oxford-pets", description="how root is laid out: the study's dataset, class folders, a "
                                   "CSV manifest or a COCO JSON (see the README: Your own data)")
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

    @model_validator(mode="after")
    def _scenes_layout(self) -> DataConfig:
        if self.synthetic is not None and self.synthetic.scenes and self.format not in ("csv", "coco"):
            raise ValueError(f"data.synthetic.scenes writes a csv or coco dataset; data.format is "
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

    @model_validator(mode="after")
    def _validate_params(self) -> LabelerSpec:
        self.params = validate_params(self.name, self.params)
        if self.id is None:
            self.id = self.name
        return self

    @property
    def key(self) -> str:
        return self.id or self.name

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

    def model_and_options(self, model: str | None = None, options: dict | None = None) -> tuple[str, dict]:
        """The model a run trains and its options (``options_for``)."""
        return model or self.model, options_for(self.model, self.model_options, model, options)

    @model_validator(mode="after")
    def _schedule_matches_epochs(self) -> TrainConfig:
        if isinstance(self.labels, list):
            total = sum(step.epochs for step in self.labels)
            if total != self.epochs:
                raise ValueError(
                    f"labels schedule covers {total} epochs but epochs is {self.epochs}"
                )
        return self


def options_for(configured_model: str, configured_options: dict, model: str | None,
                options: dict | None) -> dict:
    """The one rule of model options: options given are used as they are; otherwise a run of
    the configured model keeps ``train.model_options`` and a run of another model starts from
    none (options belong to the model they were set for)."""
    if options is not None:
        return dict(options)
    return dict(configured_options) if model in (None, configured_model) else {}


# The train fields a sweep trial (and a search space) may set, in the order a grid crosses them.
TRIAL_FIELDS: tuple[str, ...] = ("labels", "threshold", "model", "lr", "epochs", "select", "rounds",
                                 "reviewed", "model_options", "weights", "agreement", "reviewed_weight")
SPACE_KEYS = TRIAL_FIELDS


def _optional_field(name: str) -> tuple[Any, Any]:
    """TrainConfig's field ``name`` as an optional override: same type, constraints and
    validators, default None (unset keeps the study's value)."""
    info = TrainConfig.model_fields[name]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return annotation | None, Field(None, description=info.description)


TrialOverrides = create_model("TrialOverrides", __base__=StrictModel,
                              **{name: _optional_field(name) for name in TRIAL_FIELDS})


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


class TrialSpec(TrialOverrides):
    """One training run of a sweep: overrides of the ``train`` section (``TRIAL_FIELDS``, typed
    and validated as the train section's own fields), plus where it reports."""

    name: str | None = Field(None, description="short id; default derived from the overrides")
    table: str | None = Field(None, description="the study's table it reproduces, e.g. '2.2'")
    paper_row: PaperRow = Field(None, description="key of the study's row (wsss/paper.py)")

    def overrides(self) -> dict[str, Any]:
        """The ``train`` fields this trial sets (unset ones keep the study's values)."""
        return {k: getattr(self, k) for k in TRIAL_FIELDS if getattr(self, k) is not None}


class DirectEval(StrictModel):
    """A mask set scored on the test split as a prediction (e.g. SAM2 with no training)."""

    labeler: str
    name: str | None = None
    table: str | None = None
    paper_row: PaperRow = None


class SweepConfig(StrictModel):
    trials: list[TrialSpec] = Field(default_factory=list, description="explicit runs (rows)")
    space: dict[str, list[Any]] = Field(
        default_factory=dict, description=f"grid (or samples) over {', '.join(SPACE_KEYS)}; "
        "crossed with every trial")
    mode: Literal["grid", "sample"] = "grid"
    num_samples: int = Field(1, ge=1)
    asha: bool = False
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0, description="retries of a failed trial")
    direct_eval: list[DirectEval] = Field(default_factory=list)
    storage: LocalPath = "results/sweep"

    @field_validator("space")
    @classmethod
    def _known_space_keys(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Each key is a trial field, and each choice a valid value of it (the field's own type)."""
        for key, choices in value.items():
            if key not in SPACE_KEYS:
                raise ValueError(f"unknown search key {key!r}; allowed: {', '.join(SPACE_KEYS)}")
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"space.{key} must be a non-empty list of choices")
            for choice in choices:
                try:
                    TrialOverrides.model_validate({key: choice})
                except ValidationError as error:
                    reason = error.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ValueError(f"space.{key} choice {choice!r}: {reason}") from None
        return value


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


class StudyConfig(StrictModel):
    """A whole study: data, classifier, pseudo-mask generators, training, sweep, tracking."""

    name: str = "study"
    weights_policy: Literal["pretrained", "random"] = Field(
        "pretrained", description="'random' allows random-init models (smoke runs and tests)"
    )
    data: DataConfig = DataConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    labelers: list[LabelerSpec] = Field(default_factory=list)
    pipeline: PipelineConfig = PipelineConfig()
    train: TrainConfig = TrainConfig()
    sweep: SweepConfig = SweepConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _unique_labeler_ids(self) -> StudyConfig:
        seen: set[str] = set()
        for spec in self.labelers:
            if spec.key in seen:
                raise ValueError(f"two labelers share the id {spec.key!r}; give one an 'id'")
            seen.add(spec.key)
        for spec in self.labelers:
            unknown = [key for key in spec.sources if key not in seen]
            if unknown:
                raise ValueError(f"labeler {spec.key!r}: sources {unknown} are not labeler ids of this "
                                 f"study ({', '.join(sorted(seen))})")
        self.with_sources([spec.key for spec in self.labelers])  # raises on a cycle
        return self

    def with_sources(self, keys: list[str]) -> list[LabelerSpec]:
        """The labelers of ``keys`` and every one they read from, sources first."""
        ordered: list[LabelerSpec] = []

        def visit(key: str, path: tuple[str, ...]) -> None:
            if key in path:
                raise ValueError(f"labeler sources form a cycle: {' -> '.join(path + (key,))}")
            spec = self.labeler(key)
            for source in spec.sources:
                visit(source, path + (key,))
            if spec not in ordered:
                ordered.append(spec)

        for key in keys:
            visit(key, ())
        return ordered

    @model_validator(mode="after")
    def _per_class_generators(self) -> StudyConfig:
        """With several classes per image only generators that make class-indexed masks run."""
        if self.data.task != "semantic":
            return self
        able = [name for name in list_labelers() if get_labeler_class(name).per_class]
        for spec in self.labelers:
            if not get_labeler_class(spec.name).per_class:
                raise ValueError(f"labeler {spec.key!r} ({spec.name}) makes one-class masks only; with "
                                 f"data.task: semantic use {', '.join(able)} (each class the image "
                                 f"carries gets its own heatmap, box or prompt)")
        return self

    @model_validator(mode="after")
    def _sweep_refers_to_known_names(self) -> StudyConfig:
        ids = {spec.key for spec in self.labelers}
        known_labels = ", ".join(["gt", *sorted(ids)])
        for where, labels in self._sweep_labels():
            for key in labels:
                if key != "gt" and key not in ids:
                    raise ValueError(f"{where}: labels {key!r} is neither 'gt' nor a labeler id "
                                     f"({known_labels})")
        models = [t.model for t in self.sweep.trials if t.model] + list(self.sweep.space.get("model", []))
        for model in [self.train.model, *models]:
            if model.split("/")[0] not in list_models():
                raise ValueError(f"unknown model {model!r}; known: {', '.join(list_models())}")
        check_model_options(self.train.model, self.train.model_options)  # options of train.model
        unknown = [key for key in self.train.agreement if key not in ids]
        if unknown:
            raise ValueError(f"train.agreement: {unknown} are not labeler ids ({known_labels})")
        for entry in self.sweep.direct_eval:
            if entry.labeler not in ids:
                raise ValueError(f"sweep.direct_eval: {entry.labeler!r} is not a labeler id ({known_labels})")
        return self

    def _sweep_labels(self):
        yield "train.labels", label_keys(self.train.labels)
        for index, trial in enumerate(self.sweep.trials):
            yield f"sweep.trials.{index}", label_keys(trial.labels)
        for choice in self.sweep.space.get("labels", []):
            yield "sweep.space.labels", label_keys(choice)

    @model_validator(mode="after")
    def _thresholds_that_act(self) -> StudyConfig:
        """A threshold only cuts stored heatmaps (the CAM family); on labels stored as masks
        it would change a run's name and not its labels, so it is refused."""
        kinds = {spec.key: get_labeler_class(spec.name).stage for spec in self.labelers}

        def check(where: str, labels: Any, threshold: float | None) -> None:
            keys = label_keys(labels)
            if threshold is None or not keys or any(kinds.get(key) == "heatmap" for key in keys):
                return
            names = ", ".join(f"{key} ({'ground truth' if key == 'gt' else self.labeler(key).name})"
                              for key in keys)
            heatmap_sets = ", ".join(k for k, v in kinds.items() if v == "heatmap") or "none configured"
            raise ValueError(f"{where}: threshold {threshold} does nothing to labels {names}: they "
                             f"are stored as masks, not heatmaps; drop the threshold, or give it a "
                             f"CAM-family mask set ({heatmap_sets})")

        check("train", self.train.labels, self.train.threshold)
        for index, trial in enumerate(self.sweep.trials):
            if trial.threshold is not None:  # one it inherits is dropped where it does nothing
                labels = trial.labels if trial.labels is not None else self.train.labels
                name = f" ({trial.name})" if trial.name else ""
                check(f"sweep.trials.{index}{name}", labels, trial.threshold)
        return self

    def heatmap_label(self, labels: Any) -> bool:
        """Whether any of these labels is a stored heatmap set (the only kind a threshold cuts)."""
        kinds = {spec.key: get_labeler_class(spec.name).stage for spec in self.labelers}
        return any(kinds.get(key) == "heatmap" for key in label_keys(labels))

    def resolved(self, base: str | Path | None = None) -> StudyConfig:
        """A copy whose relative local paths are absolute (from ``base``, default the cwd).

        Ray Tune trials and Train workers do not run in the driver's working directory, so
        everything handed to them must name absolute paths (or URIs such as s3://). Every field
        typed ``LocalPath`` is one, wherever it sits (trials and search spaces included).
        """
        base = Path(base or Path.cwd())

        def absolute(value: str | None) -> str | None:
            if value is None or "://" in value or value in NAMED_WEIGHTS:
                return value
            return str((base / value).resolve()) if not Path(value).is_absolute() else value

        data = self.model_dump(mode="json")
        resolve_paths(StudyConfig, data, absolute)
        space = data["sweep"]["space"]
        for key in space:
            if is_path(TrialOverrides.model_fields[key]):
                space[key] = [absolute(v) for v in space[key]]
        uri = data["tracking"]["tracking_uri"]
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            data["tracking"]["tracking_uri"] = "sqlite:///" + absolute(uri[len("sqlite:///"):])
        return StudyConfig.model_validate(data)

    def labeler(self, key: str) -> LabelerSpec:
        """The labeler spec with this id; the error lists the configured ids."""
        for spec in self.labelers:
            if spec.key == key:
                return spec
        known = ", ".join(spec.key for spec in self.labelers) or "none"
        raise ConfigError(f"no labeler with id {key!r} in this config (configured: {known})")


def is_path(info: Any) -> bool:
    """Whether a pydantic field is typed ``LocalPath`` (alone, optional, or annotated)."""
    found = [*info.metadata]
    stack = [info.annotation]
    while stack:
        annotation = stack.pop()
        found += getattr(annotation, "__metadata__", ())
        stack += typing.get_args(annotation)
    return any(isinstance(item, IsPath) for item in found)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config model inside a field's type (``X``, ``X | None``, ``list[X]``), if any."""
    stack = [annotation]
    while stack:
        candidate = stack.pop()
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        stack += typing.get_args(candidate)
    return None


def resolve_paths(model: type[BaseModel], data: dict[str, Any], absolute) -> None:
    """Apply ``absolute`` in place to every ``LocalPath`` value of ``data`` (a dump of ``model``)."""
    for name, info in model.model_fields.items():
        value = data.get(name)
        if value is None:
            continue
        if is_path(info):
            data[name] = absolute(value)
            continue
        section = _section_model(info.annotation)
        for item in value if isinstance(value, list) else [value]:
            if section is not None and isinstance(item, dict):
                resolve_paths(section, item, absolute)


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: dotted field path, the value given, and what is allowed."""
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see `wsss config show` for the fields)"
        lines.append(f"  {path}: {message}{given(item.get('input'))}")
    return "\n".join(lines)


def given(value: Any) -> str:
    """`` (got VALUE)`` for a field's value; nothing for a whole section (a check across fields
    fails on the section, and its every field would bury the message)."""
    if isinstance(value, (dict, list)) and len(repr(value)) > 80:
        return ""
    return f" (got {value!r})"


def parse_config(data: dict[str, Any], source: str = "config") -> StudyConfig:
    """Validate a mapping as a StudyConfig, raising ConfigError with readable messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a YAML study config; ``overrides`` maps dotted paths to values (``train.epochs``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return parse_config(data, str(path))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted == 'a.b'``, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a mapping")
    node[leaf] = value


def parse_overrides(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["train.epochs=3", ...]`` -> ``{"train.epochs": 3}`` (values read as YAML); every
    KEY=VALUE flag of the command line (``--set``, ``--param``, ``--model-option``) uses it."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: expected dotted.key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
