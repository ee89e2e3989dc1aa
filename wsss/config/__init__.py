"""Typed configuration for every stage of a study, loaded from YAML.

Every model forbids unknown fields, so a typo fails before any work starts, and every error
names the field's dotted path, the value given and what is allowed (see ``ConfigError``).

- ``base``: ``StrictModel`` and ``ConfigError``
- ``paths``: ``LocalPath`` fields and how they are made absolute
- ``sections``: data, classifier, labelers, pipeline, train and tracking sections
- ``trials``: the sweep section (trials, search spaces, direct evaluations)
- ``study``: ``StudyConfig``, the checks across sections, ``resolved``
- ``loading``: YAML and ``--set`` overrides in, readable errors out

Every name is re-exported here: ``from wsss.config import StudyConfig`` is the usual import.
"""

from wsss.config.base import ConfigError, StrictModel
from wsss.config.loading import (
    format_validation_error,
    given,
    load_config,
    parse_config,
    parse_overrides,
    set_dotted,
)
from wsss.config.paths import NAMED_WEIGHTS, IsPath, LocalPath, absolute_path, is_path, resolve_paths
from wsss.config.sections import (
    BorderPolicy,
    ClassifierConfig,
    DataConfig,
    Fraction,
    LabelerSpec,
    PipelineConfig,
    ReviewedWeight,
    ScalingSection,
    ScheduleStep,
    Select,
    SynthConfig,
    TrackingConfig,
    TrainConfig,
    check_reviewed_weight,
    label_keys,
    resolve_select,
)
from wsss.config.study import StudyConfig
from wsss.config.trials import SPACE_KEYS, TRIAL_FIELDS, DirectEval, PaperRow, SweepConfig, TrialOverrides, TrialSpec

__all__ = [
    "NAMED_WEIGHTS", "SPACE_KEYS", "TRIAL_FIELDS", "BorderPolicy", "ClassifierConfig", "ConfigError", "DataConfig",
    "DirectEval", "Fraction", "IsPath", "LabelerSpec", "LocalPath", "PaperRow", "PipelineConfig", "ReviewedWeight",
    "ScalingSection", "ScheduleStep", "Select", "StrictModel", "StudyConfig", "SweepConfig", "SynthConfig",
    "TrackingConfig", "TrainConfig", "TrialOverrides", "TrialSpec", "absolute_path", "check_reviewed_weight",
    "format_validation_error", "given", "is_path", "label_keys", "load_config", "parse_config", "parse_overrides",
    "resolve_paths", "resolve_select", "set_dotted",
]
