"""Package-manager defaults: pip ``--upgrade``, uv ``--no-cache`` (only when there are packages)."""

from __future__ import annotations

from raydrive.hookspecs import hookimpl

DEFAULTS = {"pip": ["--upgrade"], "uv": ["--no-cache"]}


@hookimpl
def raydrive_package_manager_options(manager: str, packages: list[str]) -> list[str] | None:
    return list(DEFAULTS.get(manager, [])) if packages else None
