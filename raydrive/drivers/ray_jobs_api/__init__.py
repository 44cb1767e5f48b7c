"""``ray-jobs-api`` (entry point ``raydrive.drivers.ray_jobs_api:RayJobsApiExecutor``): actions as Ray
Jobs over the dashboard's HTTP API.

Submitter side:

- :mod:`.executor`: :class:`RayJobsApiExecutor` (connection and submission); :mod:`.options`;
- :mod:`.tracking`: status, result, attempts, stop, delete and logs of a submitted job;
- :mod:`.attempts`: retries, as a chain of Ray Jobs under derived submission ids;
- :mod:`.dashboard`: the dashboard client (one async implementation, the sync API a thin wrapper);
- :mod:`.sdk`: submission through Ray's ``JobSubmissionClient`` over that client;
- :mod:`.follow`: the log follower; :mod:`.outcome`: the outcome reader;
- :mod:`.cleanup`: ``delete()``'s removal of the outcome file.

Cluster side: :mod:`.entry`, the job's entrypoint (``python -m raydrive.drivers.ray_jobs_api.entry``).
Both: :mod:`.wire`, the payload and the outcome, packed and unpacked in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raydrive.drivers.ray_jobs_api.dashboard import AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV, auth_headers
    from raydrive.drivers.ray_jobs_api.executor import JobsApiOptions, RayJobsApiExecutor

__all__ = ["AUTH_TOKEN_ENV", "AUTH_TOKEN_PATH_ENV", "JobsApiOptions", "RayJobsApiExecutor", "auth_headers"]

_DASHBOARD_NAMES = frozenset({"AUTH_TOKEN_ENV", "AUTH_TOKEN_PATH_ENV", "auth_headers"})


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562): the driver's cluster-side modules import this package and
    # must not pay for the executor's imports (see tests/test_cold_imports.py).
    if name in __all__:
        import importlib

        module = "dashboard" if name in _DASHBOARD_NAMES else "executor"
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
