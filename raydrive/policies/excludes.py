"""Default working-dir excludes: VCS data, caches, compiled files, virtualenvs and credential files
never travel. A user re-includes one explicitly with the ``include`` option (``include=[".env.example"]``)."""

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
# Files that hold credentials: dotenv files, keys, cloud / registry / git credentials.
SECRET_EXCLUDES = [
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    "id_dsa*",
    ".ssh/",
    ".aws/",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    ".docker/config.json",
]


@hookimpl
def raydrive_working_dir_excludes(request: PackagingRequest) -> list[str] | None:
    return [*DEFAULT_EXCLUDES, *SECRET_EXCLUDES]
