"""Names a package exports without importing them until first use (PEP 562's ``__getattr__``).

The driver packages export their executors this way: the entry point
``raydrive.drivers.ray_job:RayJobExecutor`` resolves, while a module of the same package that runs
on the cluster (the registry, the worker) imports the package without loading the executor.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a module, relative
    to ``package`` when it starts with a dot) on first use of ``name`` and returns its attribute."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__
