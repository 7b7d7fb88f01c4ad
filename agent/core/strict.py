"""The base of every settings model, in the configuration and in rule files."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Frozen, and strict about keys: a misspelt key is an error naming it, not a setting ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")
