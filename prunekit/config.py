"""Loading user-written config files (YAML or TOML) into pydantic models.

Every model a user writes derives from `StrictModel` (unknown keys are errors), and every validation
problem becomes a `ConfigError` that names the field path, what was expected and what was given, so a
bad file fails before any work starts."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from prunekit.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for user-facing config models: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a .yaml/.yml, .toml or .json file into a dict (ConfigError naming the file otherwise)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read as UTF-8 text: {exc}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {str(p)!r}: unknown format {suffix!r}; use .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid {suffix[1:].upper()}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def field_path(loc: tuple[Any, ...]) -> str:
    """`('stages', 1, 'optimizer', 'lr')` -> `stages[1].optimizer.lr` (pydantic's tagged-union steps dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and (part.startswith("function-") or "[" in part):
            continue  # validator / union-member markers, not user fields
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def format_validation_error(exc: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: `field: message (got <value>)`; `prefix` qualifies nested configs
    (`task.options`)."""
    lines = []
    for err in exc.errors():
        path = field_path(err["loc"])
        if prefix:
            path = prefix if path == "<top level>" else f"{prefix}.{path}"
        got = err.get("input")
        kind = err["type"]
        if kind == "extra_forbidden":
            lines.append(f"{path}: unknown key")
        elif kind == "missing":
            lines.append(f"{path}: required field is missing")
        else:
            shown = repr(got)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            lines.append(f"{path}: {err['msg']} (got {shown})")
    return f"invalid config {source}:\n  " + "\n  ".join(lines)


def validate_config(model: type[M], data: Any, source: str = "", prefix: str = "") -> M:
    """Validate `data` (dict or model instance) as `model`; raise ConfigError naming each bad field
    (as `prefix.field` when the data sits inside a larger config)."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source or prefix or model.__name__, prefix)) from None


def load_config(model: type[M], source: str | os.PathLike | dict | M) -> M:
    """Load a config from a file path, a dict or an existing instance, validated as `model`."""
    if isinstance(source, (str, os.PathLike)):
        return validate_config(model, read_config_file(source), repr(str(source)))
    return validate_config(model, source)
