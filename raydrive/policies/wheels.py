"""Wheels policy: every ``*.whl`` in ``wheels_dir`` (under the working dir) is installed in the job."""

from __future__ import annotations

from raydrive.core.policy_types import PackageSet, PackagingRequest
from raydrive.hookspecs import hookimpl
from raydrive.policies.requirements import WORKING_DIR_VAR


@hookimpl
def raydrive_collect_packages(request: PackagingRequest) -> PackageSet | None:
    if request.working_dir is None:
        return None
    wheels = request.working_dir / request.wheels_dir
    if not wheels.is_dir():
        return None
    rel = wheels.resolve().relative_to(request.working_dir).as_posix()
    found = sorted(p.name for p in wheels.glob("*.whl"))
    if not found:
        return None
    return PackageSet(packages=[f"{WORKING_DIR_VAR}/{rel}/{name}" for name in found])
