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

from typing import TYPE_CHECKING

from raydrive.core.lazy import lazy_exports

if TYPE_CHECKING:
    from raydrive.drivers.ray_jobs_api.dashboard import AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV, auth_headers
    from raydrive.drivers.ray_jobs_api.executor import JobsApiOptions, RayJobsApiExecutor

__all__ = ["AUTH_TOKEN_ENV", "AUTH_TOKEN_PATH_ENV", "JobsApiOptions", "RayJobsApiExecutor", "auth_headers"]

# Imported on first use: the driver's cluster-side modules import this package and must not pay
# for the executor's imports (tests/test_cold_imports.py).
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(["AUTH_TOKEN_ENV", "AUTH_TOKEN_PATH_ENV", "auth_headers"], ".dashboard"),
        **dict.fromkeys(["JobsApiOptions", "RayJobsApiExecutor"], ".executor"),
    },
)
