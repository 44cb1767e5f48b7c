"""Submitting through Ray's own ``JobSubmissionClient``, its HTTP routed through :mod:`.dashboard`.

Ray's client does the submission request, the upload of local ``py_modules`` and the runtime-env
validation exactly as ``ray job submit`` does; raydrive only replaces its transport, so that the
timeouts, the auth header and the error mapping are the same as for every other call.
Ray is imported here, at the first submission (never when drivers are listed).
"""

from __future__ import annotations

import functools
import re
import shlex
from typing import Any

from raydrive.core.errors import SubmissionError
from raydrive.core.policy_types import ResourceRequest
from raydrive.drivers.ray_jobs_api.dashboard import Dashboard
from raydrive.drivers.ray_jobs_api.outcome import ENTRY_MODULE

__all__ = ["submit_entry", "submit_job"]

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
"""A shell variable assignment (``NAME=value``) leading a command."""


@functools.cache
def _client_class() -> type:
    import ray
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient
    from ray.job_submission import JobSubmissionClient

    class DashboardJobClient(JobSubmissionClient):
        """Submission, uploads and runtime-env validation from Ray; HTTP from raydrive."""

        def __init__(self, dashboard: Dashboard, server_version: str) -> None:
            # Not JobSubmissionClient.__init__: it replaces the address with $RAY_ADDRESS or
            # $RAY_API_SERVER_ADDRESS when either is set, and the explicit address must win.
            api = dashboard.api
            self._client_ray_version = ray.__version__
            self._dashboard = dashboard
            SubmissionClient.__init__(self, address=api.address, headers=dict(api.headers), verify=api.verify)
            self._server_ray_version = server_version

        def _check_connection_and_version(
            self, min_version: str = "1.9", version_error_message: str | None = None
        ) -> None:
            # Ray calls this before every submission that names resources; the version is known.
            from packaging.version import parse

            if parse(self._server_ray_version or "0") < parse(min_version):
                raise SubmissionError(
                    version_error_message
                    or f"the cluster runs Ray {self._server_ray_version}, older than {min_version}",
                    address=self._dashboard.api.shown,
                )

        def _do_request(
            self,
            method: str,
            endpoint: str,
            *,
            data: bytes | None = None,
            json_data: Any = None,
            **kwargs: Any,
        ) -> Any:
            # Ray's callers use status_code, text, json() and raise_for_status(): httpx has them.
            return self._dashboard.request(method, endpoint, content=data, json=json_data)

    return DashboardJobClient


def submit_job(
    dashboard: Dashboard,
    *,
    entrypoint: str,
    submission_id: str,
    runtime_env: dict[str, Any],
    metadata: dict[str, str],
    resources: ResourceRequest | None,
) -> None:
    """Submit one job (Ray's ``submit_job``); Ray's errors are left to the caller to map."""
    client = dashboard.ray_client
    if client is None:
        client = dashboard.ray_client = _client_class()(dashboard, dashboard.run(dashboard.api.version()))
    request = resources or ResourceRequest()
    client.submit_job(
        entrypoint=entrypoint,
        submission_id=submission_id,
        runtime_env=runtime_env,
        metadata=metadata,
        entrypoint_num_cpus=request.num_cpus,
        entrypoint_num_gpus=request.num_gpus,
        entrypoint_memory=request.memory,
        entrypoint_resources=request.resources or None,
    )


def submit_entry(
    dashboard: Dashboard,
    *,
    python_executable: str,
    job_id: str,
    args: list[str],
    runtime_env: dict[str, Any],
    metadata: dict[str, str],
    resources: ResourceRequest | None = None,
) -> None:
    """Submit raydrive's job entry (``exec python -m raydrive.drivers.ray_jobs_api.entry <args>``,
    run by ``python_executable``) as the Ray Job ``job_id``; Ray's errors are left to the caller to
    map."""
    # `exec`: Ray's supervisor runs the entrypoint through `sh -c` and, on a stop, kills the
    # process tree it sees; a stop landing before the shell had started python left the entry
    # orphaned and running. Exec'd, the entry is the process Ray started. Variable assignments
    # leading python_executable (`X=1 python`) go before the `exec`, where the shell takes them.
    words = shlex.split(python_executable)
    lead = next((i for i, w in enumerate(words) if not _ASSIGNMENT.match(w)), len(words))
    command = shlex.join([*words[lead:], "-m", ENTRY_MODULE, *args])
    submit_job(
        dashboard,
        entrypoint=" ".join(filter(None, [shlex.join(words[:lead]), "exec", command])),
        submission_id=job_id,
        runtime_env=runtime_env,
        metadata=metadata,
        resources=resources,
    )
