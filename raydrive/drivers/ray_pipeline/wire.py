"""What crosses between ray-pipeline's submitter and its detached pipeline actor.

Kept light (no Ray or pydantic import): the actor imports it on the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["INTERRUPT_GRACE_S", "PipelineSpec", "pipeline_actor_name"]

INTERRUPT_GRACE_S = 0.75
"""Seconds an interrupted action gets on the cluster (:attr:`PipelineSpec.interrupt_grace`)."""


def pipeline_actor_name(run_id: str) -> str:
    """The detached pipeline actor's name for a run (in :data:`~raydrive.drivers.ray.wire.NAMESPACE`)."""
    return f"raydrive-pipeline-{run_id}"


@dataclass
class PipelineSpec:
    """Everything the pipeline actor needs to run (or resume) one run.

    ``entrypoints`` holds targets (``module.Class`` strings, or classes that travel by value);
    ``params`` holds the real values, secrets included. Retries and deadlines:

    - ``retry``: each action's :class:`~raydrive.core.retry.RetryPolicy` (``to_wire()``), for an
      exception the action raises (retried in place, with backoff);
    - ``max_restarts``: the actor's Ray ``max_restarts``; a restarted actor is built again with
      this same spec and continues from the run's latest checkpoint (``restart_backoff`` between);
    - ``action_timeouts``: each action's deadline in seconds (None: none); ``timeout_s`` the whole
      run's, counted from the run's start on the service (so a restart does not reset it);
    - ``checkpoint_wait_s``: with restarts, how long the next action waits for the previous
      one's checkpoint to be stored (so that a restart never repeats a completed action);
    - ``interrupt_grace``: on the cluster, the seconds an action interrupted by a cancel or its
      deadline gets to stop before the actor gives up on it and exits. Not the executor's
      ``cancel_grace`` option (how long ``cancel()`` waits for the actor before killing it
      through Ray), which must be the longer of the two.
    """

    run_id: str
    service_url: str
    entrypoints: list[Any]
    names: list[str]
    params: dict[str, Any]
    start_index: int = 0
    env: dict[str, str] = field(default_factory=dict)
    progress_interval: float = 0.25
    token: str | None = None
    cancel_poll_interval: float = 0.5
    interrupt_grace: float = INTERRUPT_GRACE_S
    retry: list[dict[str, Any] | None] = field(default_factory=list)
    max_restarts: int = 0
    restart_backoff: dict[str, Any] | None = None
    action_timeouts: list[float | None] = field(default_factory=list)
    timeout_s: float | None = None
    started_at: float | None = None  # the run's start (time.time()) its deadline counts from
    checkpoint_wait_s: float = 60.0

    def __repr__(self) -> str:  # the token, env and params may hold secrets
        return f"PipelineSpec(run_id={self.run_id!r}, names={self.names!r}, start={self.start_index})"
