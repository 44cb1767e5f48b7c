"""A third-party policy plugin: caps CPUs at 1 and tags the job's environment."""

from __future__ import annotations

from raydrive import hookimpl


@hookimpl
def raydrive_adjust_resources(action, request):
    if request.num_cpus is not None and request.num_cpus > 1:
        request.num_cpus = 1


@hookimpl
def raydrive_environment(request):
    return {"RD_THIRDPARTY_POLICY": "on"}
