"""Config-driven driver selection.

Precedence, highest first:

1. arguments to ``get_executor(name, **options)``;
2. environment: ``RAYDRIVE_EXECUTOR`` and ``RAYDRIVE_<OPTION>`` (e.g. ``RAYDRIVE_NUM_CPUS=2``);
3. the nearest config file, searching from the current directory upwards: ``raydrive.toml``
   (``executor = "ray-job"`` and a ``[ray-job]`` table of options) or ``pyproject.toml``
   (``[tool.raydrive]`` with ``executor`` and a ``[tool.raydrive.ray-job]`` table).

With no driver named anywhere the ``local`` driver is used. Option values from the environment
are strings: JSON (``[...]``, ``{...}``) is parsed, and list options also take ``a,b,c``. Relative
paths in a config file are relative to the file's directory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEFAULT_DRIVER", "ResolvedConfig", "find_config_file", "resolve_config"]

DEFAULT_DRIVER = "local"
ENV_PREFIX = "RAYDRIVE_"


@dataclass
class ResolvedConfig:
    """The chosen driver, its options, and where each came from (``argument``, ``env:NAME``, a path)."""

    driver: str
    options: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)
    config_file: Path | None = None

    def __repr__(self) -> str:
        from raydrive.core.redaction import redact

        return (
            f"ResolvedConfig(driver={self.driver!r}, options={redact(self.options)!r}, "
            f"sources={self.sources!r}, config_file={self.config_file!r})"
        )


def find_config_file(start: Path | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The nearest ``raydrive.toml`` or ``pyproject.toml`` with ``[tool.raydrive]``, and its table."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        dedicated = directory / "raydrive.toml"
        if dedicated.is_file():
            return dedicated, tomllib.loads(dedicated.read_text())
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("raydrive")
            if isinstance(table, dict):
                return pyproject, table
    return None


def _annotation_kind(model: type[BaseModel] | None, name: str) -> tuple[bool, bool]:
    """(is a list, is a path) for an options field."""
    if model is None or name not in model.model_fields:
        return False, False
    ann = model.model_fields[name].annotation
    # Annotated[Path, ...] (a UserPath option) counts as its base type.
    kinds = [get_args(k)[0] if get_origin(k) is Annotated else k for k in (ann, *get_args(ann))]
    is_list = any(get_origin(k) is list or k is list for k in kinds)
    is_path = any(k is Path for k in kinds)
    return is_list, is_path


def _from_env_string(model: type[BaseModel] | None, name: str, raw: str) -> Any:
    stripped = raw.strip()
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
    is_list, _ = _annotation_kind(model, name)
    if is_list:
        return [part.strip() for part in stripped.split(",") if part.strip()]
    if stripped.lower() in {"none", "null"}:
        return None
    return raw


def resolve_config(
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    options_model: Any = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ResolvedConfig:
    """Work out the driver and its options from arguments, environment and config file.

    :param options_model: a callable ``driver name -> options model`` (or None) telling which
        ``RAYDRIVE_*`` variables are options of the chosen driver.
    """
    environ = os.environ if environ is None else environ
    found = find_config_file(cwd)
    file_path, table = found if found else (None, {})

    sources: dict[str, str] = {}
    if name:
        driver, sources["executor"] = name, "argument"
    elif environ.get(ENV_PREFIX + "EXECUTOR"):
        driver, sources["executor"] = environ[ENV_PREFIX + "EXECUTOR"], "env:RAYDRIVE_EXECUTOR"
    elif table.get("executor"):
        driver, sources["executor"] = str(table["executor"]), str(file_path)
    else:
        driver, sources["executor"] = DEFAULT_DRIVER, "default"

    model = options_model(driver) if options_model else None
    merged: dict[str, Any] = {}
    driver_table = table.get(driver, {}) if isinstance(table.get(driver), dict) else {}
    for key, value in driver_table.items():
        _, is_path = _annotation_kind(model, key)
        # `~` first (a home path is absolute), then relative to the config file, as git does.
        if is_path and isinstance(value, str) and file_path and not Path(value).expanduser().is_absolute():
            value = str((file_path.parent / value).resolve())
        merged[key], sources[key] = value, str(file_path)
    if model is not None:
        for key in model.model_fields:
            env_key = ENV_PREFIX + key.upper()
            if env_key in environ:
                merged[key] = _from_env_string(model, key, environ[env_key])
                sources[key] = f"env:{env_key}"
    for key, value in (options or {}).items():
        merged[key], sources[key] = value, "argument"
    return ResolvedConfig(driver=driver, options=merged, sources=sources, config_file=file_path)
