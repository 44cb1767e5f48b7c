"""The driver registry: stevedore over the ``raydrive.drivers`` entry-point group.

Built-in drivers are entry points in raydrive's own ``pyproject.toml``, found the same way as a
third-party package's. ``DriverRegistry.from_classes`` builds a registry without entry points,
for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raydrive.core.errors import DriverLoadError, DriverNotFoundError

__all__ = ["DRIVER_GROUP", "DriverInfo", "DriverRegistry", "get_registry"]

DRIVER_GROUP = "raydrive.drivers"
_log = logging.getLogger("raydrive.registry")


@dataclass(frozen=True)
class DriverInfo:
    """A registered driver: its name, class (None when it failed to load), description, error."""

    name: str
    cls: type | None
    description: str
    error: str | None = None
    target: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _describe(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


class DriverRegistry:
    """Finds drivers by name. Loading is lazy: only what is asked for is imported."""

    def __init__(self, classes: Mapping[str, type] | None = None) -> None:
        self._classes = dict(classes) if classes is not None else None

    @classmethod
    def from_classes(cls, classes: Mapping[str, type]) -> DriverRegistry:
        """A registry of exactly these drivers, with no entry points involved (for tests)."""
        return cls(classes)

    def _entry_points(self) -> dict[str, Any]:
        # Names only (cheap, nothing imported), read by stevedore like everything else here: one
        # discovery path, so that a name listed is a name `get` finds (both see the same cache).
        from stevedore import NamedExtensionManager

        found: dict[str, Any] = {}
        for ep in NamedExtensionManager(DRIVER_GROUP, names=[]).list_entry_points():
            found.setdefault(ep.name, ep)  # first on sys.path wins, as for imports
        return found

    @staticmethod
    def refresh() -> None:
        """Forget entry points read so far (after installing a driver package at run time);
        until then, both :meth:`names` and :meth:`get` see the drivers as first read."""
        from stevedore import ExtensionManager

        ExtensionManager.ENTRY_POINT_CACHE.clear()

    def names(self) -> list[str]:
        if self._classes is not None:
            return sorted(self._classes)
        return sorted(self._entry_points())

    def get(self, name: str) -> type:
        """The driver class registered as ``name``.

        :raises DriverNotFoundError: no such name (the error lists the known ones).
        :raises DriverLoadError: the entry point exists but failed to import (traceback kept).
        """
        if self._classes is not None:
            if name not in self._classes:
                raise DriverNotFoundError(name, DRIVER_GROUP, list(self._classes))
            return self._classes[name]
        from stevedore import NamedExtensionManager

        if name not in self._entry_points():
            raise DriverNotFoundError(name, DRIVER_GROUP, self.names())

        def fail(_manager: Any, entry_point: Any, err: BaseException) -> None:
            raise DriverLoadError(name, f"{type(err).__name__}: {err}") from err

        manager = NamedExtensionManager(
            DRIVER_GROUP, names=[name], on_load_failure_callback=fail, name_order=True
        )
        return manager[name].plugin

    def list(self) -> list[DriverInfo]:
        """Every driver; one that fails to load is reported with its error, not raised."""
        if self._classes is not None:
            return [DriverInfo(n, c, _describe(c)) for n, c in sorted(self._classes.items())]
        from stevedore import ExtensionManager

        infos: dict[str, DriverInfo] = {}

        def failed(_manager: Any, entry_point: Any, err: BaseException) -> None:
            _log.warning("could not load %s: %s", entry_point.name, err)
            infos[entry_point.name] = DriverInfo(
                entry_point.name, None, "", f"{type(err).__name__}: {err}", entry_point.value
            )

        manager = ExtensionManager(DRIVER_GROUP, on_load_failure_callback=failed)
        for ext in manager:
            infos.setdefault(
                ext.name, DriverInfo(ext.name, ext.plugin, _describe(ext.plugin), None, ext.entry_point.value)
            )
        return [infos[name] for name in sorted(infos)]


_registry: DriverRegistry | None = None


def get_registry() -> DriverRegistry:
    """The process-wide registry (entry points unless replaced by :func:`set_registry`)."""
    global _registry
    if _registry is None:
        _registry = DriverRegistry()
    return _registry


def set_registry(registry: DriverRegistry | None) -> None:
    """Replace the process-wide registry (None: back to entry points)."""
    global _registry
    _registry = registry
