"""``get_executor`` and ``available_drivers``: the front door of raydrive."""

from __future__ import annotations

from typing import Any

from raydrive.core.config import ResolvedConfig, resolve_config
from raydrive.core.registry import DriverInfo, get_registry

__all__ = ["available_drivers", "effective_config", "get_executor"]


def _options_model(driver: str) -> Any:
    try:
        return getattr(get_registry().get(driver), "Options", None)
    except Exception:  # an unknown or broken driver is reported by get_executor itself
        return None


def effective_config(name: str | None = None, **options: Any) -> ResolvedConfig:
    """The driver and options ``get_executor(name, **options)`` would use, with their sources."""
    return resolve_config(name, options, options_model=_options_model)


def get_executor(name: str | None = None, **options: Any) -> Any:
    """Create a ready executor.

    :param name: a driver's registered name (``local``, ``ray-actor``, ``ray-task``, ``ray-job``,
        ``ray-jobs-api``, ``ray-pipeline`` or a third-party one). None: take it from
        ``RAYDRIVE_EXECUTOR``, else from ``raydrive.toml`` / ``[tool.raydrive]`` in
        ``pyproject.toml``, else ``local``.
    :param options: the driver's options; they win over ``RAYDRIVE_<OPTION>`` variables, which win
        over the config file's ``[<driver>]`` table.
    :returns: the executor. Nothing contacts a cluster until it is first used.
    :raises DriverNotFoundError: no driver of that name (the error lists the known ones).
    :raises DriverLoadError: the driver is registered but failed to import.
    :raises InvalidOptionsError: an option is misspelt or has a bad value (the field is named).
    """
    config = effective_config(name, **options)
    cls = get_registry().get(config.driver)
    return cls(**config.options)


def available_drivers() -> list[DriverInfo]:
    """Every registered driver with its class and one-line description.

    A driver that fails to load is listed with its ``error`` instead of failing the listing.
    """
    return get_registry().list()
