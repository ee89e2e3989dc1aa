"""The sweep section: trials (typed overrides of the train section), search spaces, direct
evaluations."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, create_model, field_validator

from wsss.config.base import StrictModel
from wsss.config.paths import LocalPath
from wsss.config.sections import TrainConfig
from wsss.paper import paper_row


def _check_paper_row(value: str | None) -> str | None:
    try:
        paper_row(value)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    return value


PaperRow = Annotated[str | None, AfterValidator(_check_paper_row)]


# The train fields a sweep trial (and a search space) may set, in the order a grid crosses them.
TRIAL_FIELDS: tuple[str, ...] = ("labels", "threshold", "model", "lr", "epochs", "select", "rounds",
                                 "reviewed", "model_options", "weights", "agreement", "reviewed_weight",
                                 "edge_band", "self_training", "self_training_seeds",
                                 "self_training_models")
SPACE_KEYS = TRIAL_FIELDS


def _optional_field(name: str) -> tuple[Any, Any]:
    """TrainConfig's field ``name`` as an optional override: same type, constraints and
    validators, default None (unset keeps the study's value)."""
    info = TrainConfig.model_fields[name]
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return annotation | None, Field(None, description=info.description)


TrialOverrides = create_model("TrialOverrides", __base__=StrictModel,
                              **{name: _optional_field(name) for name in TRIAL_FIELDS})


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

