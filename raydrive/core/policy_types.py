"""The small data types that hooks receive and return (see :mod:`raydrive.hookspecs`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "EnvironmentRequest",
    "JobEvent",
    "PackageSet",
    "PackagingRequest",
    "ResourceRequest",
    "merge_options",
]


@dataclass(frozen=True)
class PackagingRequest:
    """What the packaging hooks know about the job being packaged."""

    working_dir: Path | None
    requirements_file: Path | None
    wheels_dir: str
    package_manager: str


@dataclass
class PackageSet:
    """Packages to install and package-manager options, as a packaging hook contributes them."""

    packages: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EnvironmentRequest:
    """The caller's explicit ``env`` (None when not given) and the submitter's own environment."""

    env: Mapping[str, str] | None
    os_environ: Mapping[str, str]

    def __repr__(self) -> str:
        explicit = None if self.env is None else sorted(self.env)
        return f"EnvironmentRequest(env_keys={explicit!r}, os_environ_keys={len(self.os_environ)})"


@dataclass
class ResourceRequest:
    """Resources an action asks for; resources hooks may change it in place."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)

    def as_ray_options(self) -> dict[str, object]:
        """The request as Ray's ``.options()`` keywords, leaving out what was not asked for."""
        opts: dict[str, object] = {}
        if self.num_cpus is not None:
            opts["num_cpus"] = self.num_cpus
        if self.num_gpus is not None:
            opts["num_gpus"] = self.num_gpus
        if self.memory is not None:
            opts["memory"] = self.memory
        if self.resources:
            opts["resources"] = dict(self.resources)
        return opts


@dataclass(frozen=True)
class JobEvent:
    """A lifecycle event: which driver, which job, which action, and how it ended."""

    driver: str
    job_id: str
    action: str
    status: str | None = None
    error: str | None = None
    attempt: int = 1
    """The attempt this event is about (1 for the first; retries count up, same job id)."""


def merge_options(*parts: list[str]) -> list[str]:
    """Concatenate command-line options, dropping repeats of a whole option and its value.

    ``--find-links a`` and ``--find-links b`` both stay; a second ``--upgrade`` does not.
    """
    groups: list[tuple[str, ...]] = []
    for part in parts:
        current: list[list[str]] = []
        for token in part:
            if token.startswith("-") or not current:
                current.append([token])
            else:
                current[-1].append(token)
        groups.extend(g for g in map(tuple, current) if g not in groups)
    return [token for group in groups for token in group]
