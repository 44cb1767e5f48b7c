"""``ray-jobs-api`` (entry point ``raydrive.drivers.ray_jobs_api:RayJobsApiExecutor``).

The driver lives in :mod:`raydrive.drivers.jobs_api`; this module keeps its public names where the
entry point and users import them.
"""

from raydrive.drivers.jobs_api.client import AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV, auth_headers
from raydrive.drivers.jobs_api.executor import JobsApiOptions, RayJobsApiExecutor

__all__ = ["AUTH_TOKEN_ENV", "AUTH_TOKEN_PATH_ENV", "JobsApiOptions", "RayJobsApiExecutor", "auth_headers"]
