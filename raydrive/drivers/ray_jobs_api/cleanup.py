"""``delete()``'s removal of a job's outcome file from the node where its driver ran.

Ray's dashboard has no API to delete a file, so a short job pinned to that node (through Ray's
``node:<ip>`` resource) runs the entry with ``--delete-result``. It costs a job start (about a
second); its own record is deleted when it ends.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from raydrive.core.errors import ExecutionError
from raydrive.core.policy_types import ResourceRequest
from raydrive.drivers.ray_jobs_api.dashboard import Dashboard
from raydrive.drivers.ray_jobs_api.sdk import submit_entry

__all__ = ["delete_outcome"]


def delete_outcome(
    dashboard: Dashboard,
    job_id: str,
    node_id: str,
    *,
    python_executable: str,
    env: dict[str, Any],
    driver: str,
    timeout: float = 120.0,
) -> None:
    """Delete ``job_id``'s outcome file on node ``node_id``; nothing to do when the node is gone.

    ``python_executable`` runs the entry, ``env`` is the clean-up job's runtime env (the
    executor's variables, no package), ``driver`` names the executor in the job's metadata.

    :raises ExecutionError: the clean-up job did not succeed (the file may still be there).
    """
    nodes = dashboard.run(dashboard.api.nodes())
    ip = next((n.get("node_ip") for n in nodes if n.get("node_id") == node_id), None)
    if not isinstance(ip, str):
        return  # the node has left the cluster, and its log directory with it
    cleanup_id = f"raydrive_cleanup_{uuid.uuid4().hex[:16]}"
    submit_entry(
        dashboard,
        python_executable=python_executable,
        job_id=cleanup_id,
        args=["--job-id", cleanup_id, "--delete-result", job_id],
        runtime_env=env,
        metadata={"raydrive_driver": driver, "raydrive_cleanup_of": job_id},
        resources=ResourceRequest(resources={f"node:{ip}": 0.001}),
    )

    async def ended() -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await dashboard.api.job(cleanup_id)
            if info is not None and info.terminal:
                return info.status
            await asyncio.sleep(0.05)
        return "TIMEOUT"

    status = dashboard.run(ended())
    if status == "TIMEOUT":
        raise ExecutionError(
            f"deleting the outcome file of job {job_id!r}: the clean-up job {cleanup_id!r} did not end "
            f"within {timeout:g} s; the job's record was kept, call delete() again",
            job_id=job_id,
        )
    logs = "" if status == "SUCCEEDED" else dashboard.run(dashboard.api.job_logs(cleanup_id))
    dashboard.run(dashboard.api.job_action("DELETE", cleanup_id, "", "deleted"))
    if status != "SUCCEEDED":
        raise ExecutionError(
            f"deleting the outcome file of job {job_id!r} failed ({status}); the job's record was kept, "
            f"call delete() again. The clean-up job said: {logs[-2000:]}",
            job_id=job_id,
        )
