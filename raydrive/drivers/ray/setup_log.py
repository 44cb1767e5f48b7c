"""The tail of Ray's runtime-env setup log, for the error of a setup that failed or timed out.

Ray's ``RuntimeEnvSetupError`` holds the agent's traceback (and, on a timeout, the hint "Failed to
install runtime_env within the timeout of N seconds"), not what the setup was doing: pip's command
line and output go to ``runtime_env_setup-<ray job id>.log`` in the logs dir of the node that set
the env up. :func:`setup_log_tail` reads the last lines of that file on each alive node through
Ray's public state API (``ray.util.state.get_log``, served by the dashboard agents), which works
for a remote cluster too; it returns None when the file or the dashboard is not there. The Ray job
id is the one of the process that created the actor or task: this process's own by default (the
submitting driver for ray-actor, the registry actor for ray-job's jobs).
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["SETUP_LOG_LINES", "setup_log_tail"]

SETUP_LOG_LINES = 25
"""How many of the setup log's last lines an error shows."""


def setup_log_tail(
    job_id: str | None = None, *, lines: int = SETUP_LOG_LINES, timeout_s: float = 5.0
) -> str | None:
    """The last ``lines`` lines of ``runtime_env_setup-<job_id>.log`` on the alive nodes, each
    block headed by its node; None when none could be read. Never raises."""
    try:
        import ray
        from ray.util.state import get_log

        if not ray.is_initialized():
            return None
        context = ray.get_runtime_context()
        job_id = job_id or context.get_job_id()
        # The GCS address names this cluster: with no address, the state API refuses to choose
        # when several clusters run on the machine.
        address = context.gcs_address
        filename = f"runtime_env_setup-{job_id}.log"
        blocks = []
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            text = _read(get_log, address, node["NodeID"], filename, lines, timeout_s)
            if text:
                where = node.get("NodeManagerAddress") or node["NodeID"][:12]
                blocks.append(f"--- {filename} on node {where}, last lines ---\n{text.rstrip()}")
        return "\n".join(blocks) or None
    except Exception:  # a nicety for an error message, never a second failure
        return None


def _read(
    get_log: Any, address: str, node_id: str, filename: str, lines: int, timeout_s: float
) -> str | None:
    with contextlib.suppress(Exception):  # no such file on this node, or no dashboard
        chunks = get_log(address=address, node_id=node_id, filename=filename, tail=lines, timeout=timeout_s)
        text = "".join(chunks)
        return "\n".join(text.splitlines()[-lines:])
    return None
