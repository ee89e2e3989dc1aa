"""A whole study (``StudyConfig``): its sections, the checks across them, and ``resolved``
(every local path made absolute for Ray workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from wsss.config.base import ConfigError, StrictModel
from wsss.config.paths import absolute_path, is_path, resolve_paths
from wsss.config.sections import (
    ClassifierConfig,
    DataConfig,
    LabelerSpec,
    PipelineConfig,
    TrackingConfig,
    TrainConfig,
    label_keys,
)
from wsss.config.trials import SweepConfig, TrialOverrides
from wsss.labelers.registry import get_labeler_class, list_labelers
from wsss.models.segmentation import check_model_options, list_models


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
    def _labelers_follow_the_background(self) -> StudyConfig:
        """``data.background`` reaches every labeler that cuts or paints class maps (its
        ``background`` param, so a set's identity follows it); a labeler set otherwise is an error."""
        for spec in self.labelers:
            if "background" not in get_labeler_class(spec.name).Params.model_fields:
                continue
            if spec.params.get("background", True) != self.data.background and "background" in spec.given:
                raise ValueError(f"labeler {spec.key!r} sets background: {spec.params['background']} but "
                                 f"data.background is {self.data.background}; set it once, in data")
            spec.params["background"] = self.data.background
        return self

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
            heatmap = spec.params.get("heatmap")
            method = heatmap.get("method") if isinstance(heatmap, dict) else None
            if method and not get_labeler_class(method).per_class:
                raise ValueError(f"labeler {spec.key!r} builds on heatmap {method!r}, one map for every "
                                 f"class; with data.task: semantic use a class's own map (cam, gradcam, ...)")
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
            return absolute_path(value, base)

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
