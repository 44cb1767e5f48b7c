"""Reading a ``ray-jobs-api`` job's outcome: its result, or the raydrive error for how it ended.

The job's entry writes an :class:`~.wire.Outcome` next to its log on the driver's node; it is read
here through the dashboard's log API, never scraped from the job's output. A job that left none
(stopped, killed, its runtime env never set up) is explained from Ray's own job info.
"""

from __future__ import annotations

import itertools
import shlex
from typing import Any

from raydrive.core.errors import ActorDiedError, ExecutionError
from raydrive.drivers.ray_jobs_api.dashboard import AsyncDashboard, JobInfo
from raydrive.drivers.ray_jobs_api.wire import Outcome, result_filename

__all__ = ["ENTRY_MODULE", "job_failure", "read_outcome", "result_of"]

ENTRY_MODULE = "raydrive.drivers.ray_jobs_api.entry"


async def read_outcome(api: AsyncDashboard, job_id: str, info: JobInfo) -> Outcome | None:
    """The outcome the job wrote; None when it wrote none (it never got that far), and for a
    file this submission did not write, such as an earlier job's under the same id (another
    ``run``: see :class:`.wire.Outcome`)."""
    if not info.driver_node_id:
        return None
    data = await api.read_file(info.driver_node_id, result_filename(job_id))
    outcome = None if data is None else Outcome.unpack(data)
    if outcome is not None and outcome.run is not None and outcome.run != _payload_of(info):
        return None
    return outcome


def _payload_of(info: JobInfo) -> str | None:
    """The ``--payload`` package named by the job's entrypoint (as the submitter wrote it)."""
    try:
        words = shlex.split(info.entrypoint or "")
    except ValueError:
        return None
    for flag, value in itertools.pairwise(words):
        if flag == "--payload":
            return value
    return None


def result_of(job_id: str, info: JobInfo, outcome: Outcome | None, driver: str) -> Any:
    """The result of an ended job, or raise the error that says how it ended."""
    if outcome is not None and outcome.ok:
        if info.status == "SUCCEEDED":
            return outcome.result
    elif outcome is not None and outcome.error is not None:
        raise outcome.error.to_raydrive(job_id)
    if info.status == "SUCCEEDED":
        raise ExecutionError(
            f"job {job_id!r} succeeded but left no result: was it submitted by raydrive's {driver} driver?",
            job_id=job_id,
        )
    if info.status == "STOPPED":
        raise ExecutionError(
            f"job {job_id!r} was stopped before it finished", error_type="STOPPED", job_id=job_id
        )
    raise job_failure(job_id, info)


def job_failure(job_id: str, info: JobInfo) -> ExecutionError:
    """A failed job that left no outcome: Ray's own error type and message say why."""
    error_type = info.error_type or "FAILED"
    message = (info.message or "").strip()
    if error_type.upper() == "RUNTIME_ENV_SETUP_FAILURE" or "runtime_env setup failed" in message:
        return ExecutionError(
            f"job {job_id!r}: setting up the runtime environment (packages, working dir) failed, so "
            f"the action did not run. Ray said: {message}",
            error_type="RuntimeEnvSetupError",
            error_message=message,
            job_id=job_id,
        )
    if info.driver_exit_code is not None:
        hint = ""
        if f"No module named '{ENTRY_MODULE.split('.')[0]}" in message:
            hint = (
                " raydrive is not importable by the job's Python: install it on the cluster, pass "
                "include_sdk=True, or point python_executable at the Python that has it."
            )
        return ActorDiedError(
            f"job {job_id!r}: the job's process exited with code {info.driver_exit_code} before "
            f"reporting an outcome (killed, out of memory, os._exit, or the entry could not start).{hint} "
            f"Ray said: {message}",
            error_type=error_type,
            error_message=message,
            job_id=job_id,
        )
    return ExecutionError(
        f"job {job_id!r} failed ({error_type}): {message}",
        error_type=error_type,
        error_message=message,
        job_id=job_id,
    )
