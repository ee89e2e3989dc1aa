"""What every config model shares: unknown fields refused, and one error type for a config
that cannot run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration that cannot run; the message names each bad field and value."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
