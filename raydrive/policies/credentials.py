"""Credentials policy: ``SYNAPSE_HOST`` and ``SYNAPSE_ACCESS_TOKEN`` for the job.

Taken from the submitter's environment, else from a credentials file: ``RAYDRIVE_CREDENTIALS_FILE``
or ``~/.config/raydrive/credentials`` (``KEY=VALUE`` lines, ``#`` comments). A value the caller
already set is never overridden.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from raydrive.core.policy_types import EnvironmentRequest
from raydrive.hookspecs import hookimpl

KEYS = ("SYNAPSE_HOST", "SYNAPSE_ACCESS_TOKEN")


def credentials_file(environ: Mapping[str, str]) -> Path:
    explicit = environ.get("RAYDRIVE_CREDENTIALS_FILE")
    if explicit:
        return Path(explicit).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "raydrive" / "credentials"


def read_credentials_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


@hookimpl
def raydrive_credentials(request: EnvironmentRequest, env: Mapping[str, str]) -> dict[str, str] | None:
    found = {k: request.os_environ[k] for k in KEYS if request.os_environ.get(k)}
    if len(found) < len(KEYS):
        from_file = read_credentials_file(credentials_file(request.os_environ))
        found.update({k: from_file[k] for k in KEYS if k not in found and from_file.get(k)})
    return {k: v for k, v in found.items() if k not in env} or None
