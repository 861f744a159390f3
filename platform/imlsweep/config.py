"""Loading user-written YAML into pydantic models, with errors that name the file and the key.

Every config a user writes (corpus, mixture, trial, sweep) goes through `load_config`, so a typo in
any of them reads the same way: `sweeps/eps.yaml: train.lr: Input should be a valid number`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from imlsweep.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(UserError):
    """A config file (or a value in it) is wrong; the message names the file and the key."""


class StrictModel(BaseModel):
    """Base for every user-facing config: unknown keys are errors, not silently ignored.

    `retired_keys` maps a key a model no longer takes to what replaced it, so an old config fails with
    an error that names the new key (there are no silent aliases)."""

    model_config = ConfigDict(extra="forbid", frozen=False)
    retired_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _no_retired_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, replacement in cls.retired_keys.items():
                if key in data:
                    raise ValueError(f"`{key}` is no longer a key here: {replacement}")
        return data


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        lines.append(f"{source}: {key}: {item['msg']}")
    return "\n".join(lines)


def validate_config(data: Any, model: type[Model], source: str) -> Model:
    """Validate already-parsed data; `source` names where it came from in error messages."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def load_config(path: str | Path, model: type[Model]) -> Model:
    """Read a YAML file into `model`; relative paths inside stay relative to the caller."""
    return validate_config(read_yaml(path) or {}, model, str(path))


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
