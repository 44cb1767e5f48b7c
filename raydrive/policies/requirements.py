"""Requirements policy: packages from ``requirements_file``, else ``requirements.txt`` in the working dir.

Blank and ``#`` lines are skipped; lines starting with ``-`` are package-manager options, split like
a shell splits words. A requirement that is a path to a file inside the working dir (for example
``wheels/my_pkg-1.0-py3-none-any.whl``) is rewritten to where Ray unpacks the working dir.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from raydrive.core.policy_types import PackageSet, PackagingRequest
from raydrive.hookspecs import hookimpl

WORKING_DIR_VAR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"


def parse_requirements(text: str, working_dir: Path | None = None) -> PackageSet:
    """Parse requirements text into packages and options."""
    result = PackageSet()
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            result.options.extend(shlex.split(line))
            continue
        if working_dir is not None and ("/" in line or line.endswith(".whl")):
            candidate = (working_dir / line).resolve()
            if candidate.is_file() and candidate.is_relative_to(working_dir):
                line = f"{WORKING_DIR_VAR}/{candidate.relative_to(working_dir).as_posix()}"
        if line not in result.packages:
            result.packages.append(line)
    return result


@hookimpl
def raydrive_collect_packages(request: PackagingRequest) -> PackageSet | None:
    path = request.requirements_file
    if path is None and request.working_dir is not None:
        default = request.working_dir / "requirements.txt"
        path = default if default.is_file() else None
    if path is None:
        return None
    if not Path(path).is_file():
        from raydrive.core.errors import WorkingDirError

        raise WorkingDirError(f"requirements_file {str(path)!r} does not exist", path=str(path))
    return parse_requirements(Path(path).read_text(), request.working_dir)
