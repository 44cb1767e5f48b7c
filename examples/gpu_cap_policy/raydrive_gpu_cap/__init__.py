"""``gpu-cap``: a policy plugin that caps GPUs per action and tags jobs with a team.

- ``RAYDRIVE_MAX_GPUS`` (default 1): an action asking for more GPUs is refused, naming the cap.
- ``RAYDRIVE_TEAM``: when set, travels to the job as ``TEAM`` and as a custom resource request
  ``team:<name>`` of 0.001 (so a cluster can reserve nodes per team).
"""

from __future__ import annotations

import os

from raydrive import ResourceRequest, ResourceVetoError, hookimpl


@hookimpl
def raydrive_adjust_resources(action: str, request: ResourceRequest) -> None:
    cap = float(os.environ.get("RAYDRIVE_MAX_GPUS", "1"))
    if (request.num_gpus or 0) > cap:
        raise ResourceVetoError(
            f"{action} asks for {request.num_gpus:g} GPUs; this site allows at most {cap:g} "
            "(RAYDRIVE_MAX_GPUS)"
        )
    team = os.environ.get("RAYDRIVE_TEAM")
    if team:
        request.resources.setdefault(f"team:{team}", 0.001)


@hookimpl
def raydrive_environment(request) -> dict[str, str] | None:
    team = os.environ.get("RAYDRIVE_TEAM")
    return {"TEAM": team} if team else None
