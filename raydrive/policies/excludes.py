"""Default working-dir excludes: VCS data, caches, compiled files and virtualenvs never travel."""

from __future__ import annotations

from raydrive.core.policy_types import PackagingRequest
from raydrive.hookspecs import hookimpl

DEFAULT_EXCLUDES = [
    ".git",
    ".hg",
    "__pycache__",
    "*.pyc",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
]


@hookimpl
def raydrive_working_dir_excludes(request: PackagingRequest) -> list[str] | None:
    return list(DEFAULT_EXCLUDES)
