"""A mask set's manifest: what ``manifest.json`` holds, as one frozen model with named fields.

The store writes it (``wsss.masks.store.MaskSetWriter.write_manifest``) and reads it
(``wsss.masks.store.load_manifest``); this module says what it is. A field written only by some
sets (a pipeline run's ``last_run``, a reviewed set's ``images``) is optional, and a field never
set is never written, so the JSON keys are exactly those a writer gave.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

STORE_FORMAT = 2  # 2: the manifest holds every file's digest (``files``); 1 (unmarked) did not


class QuarantineEntry(BaseModel):
    """An image a run could not make a mask of, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_id: str
    reason: str


class LastRun(BaseModel):
    """What the pipeline run that last wrote the manifest did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    written: int
    skipped: int
    wall_seconds: float
    stage_seconds: dict[str, float]


class ReviewSelection(BaseModel):
    """How the images of a review were chosen, as ``wsss export --select`` recorded it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: str | None = None
    select: str | None = None
    seed: int | None = None
    labeler_id: str | None = None
    fingerprint: str | None = None


class Manifest(BaseModel):
    """One mask set's ``manifest.json``. Sets of the pipeline carry ``labeler``, counts,
    ``quarantine`` and ``last_run``; reviewed sets (``name: reviewed``) ``images``, ``problems``
    and ``selection``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store_format: int | None = None  # None: an older store (format 1), refused on open
    labeler_id: str | None = None  # the study's id of the labeler (``reviewed-<name>`` for reviews)
    labeler: str | None = None  # the labeler's registry name (pipeline sets)
    name: str | None = None  # "reviewed" for a reviewed set
    kind: Literal["masks", "heatmaps"] = "masks"
    params: dict[str, Any] = {}
    fingerprint: str | None = None  # the set's id (``wsss.masks.store.set_fingerprint``)
    labeler_fingerprint: str | None = None  # identity: the labeler's name, params and weights
    dataset_index: str | None = None  # identity: the dataset's fingerprint
    image_size: int | None = None  # identity: the working size
    sources: dict[str, str] | None = None  # identity: fingerprints of the sets it is built on
    dataset_root: str | None = None
    files: dict[str, str] = {}  # relative path -> digest of each sound file
    images_expected: int | None = None
    images_present: int | None = None
    complete: bool = False
    quarantine: list[QuarantineEntry] | None = None
    created: float | None = None
    updated: float | None = None
    last_run: LastRun | None = None
    selection: ReviewSelection | None = None
    images: list[str] | None = None  # a reviewed set's images
    problems: list[str] | None = None  # entries of the reviewed file left out, and why
    not_reviewed: int | None = None

    @classmethod
    def parse(cls, record: Any) -> Manifest:
        """The manifest of a ``manifest.json``'s content; ValueError saying what is wrong. One of
        another store format that does not read as this one keeps only its format (and labeler
        id): it is refused or remade whole, never read as something else."""
        if not isinstance(record, dict):
            raise ValueError(f"not a JSON object but {type(record).__name__}")
        try:
            return cls.model_validate(record)
        except ValidationError as error:
            found = record.get("store_format")
            if found == STORE_FORMAT:
                raise ValueError(validation_problems(error)) from None
            key = record.get("labeler_id")
            return cls(store_format=found if isinstance(found, int) else None,
                       labeler_id=key if isinstance(key, str) else None)

    @classmethod
    def of(cls, manifest: Manifest | dict[str, Any]) -> Manifest:
        """``manifest`` as a Manifest: a dict a caller built is validated (ValueError saying
        what is wrong)."""
        if isinstance(manifest, Manifest):
            return manifest
        try:
            return cls.model_validate(manifest)
        except ValidationError as error:
            raise ValueError(validation_problems(error)) from None

    def to_dict(self) -> dict[str, Any]:
        """The fields that were set, nested ones as dicts: the JSON's keys and values (python
        mode, so a float such as ``inf`` is written as ``json`` writes it, as ever)."""
        return self.model_dump(exclude_unset=True)

    def to_json(self) -> str:
        """``manifest.json``'s text: sorted keys, indented."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)


def validation_problems(error: ValidationError, shown: int = 3) -> str:
    """The first few fields a ValidationError names, with what is wrong with each."""
    found = [f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in error.errors()]
    return "; ".join(found[:shown]) + (f"; and {len(found) - shown} more" if len(found) > shown else "")
