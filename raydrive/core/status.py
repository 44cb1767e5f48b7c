"""The one status vocabulary of raydrive's jobs, and its mapping to each driver's public type.

Every driver thinks in :class:`JobState`; what a driver *returns* keeps the guide's types:

=================  ===================================  ==========================================
driver             ``get_status`` returns               mapping
=================  ===================================  ==========================================
ray-job, local     :class:`JobState` (a ``str``)         itself
ray-jobs-api       Ray's ``JobStatus``                  same names (:func:`to_ray_job_status`)
ray-pipeline       :class:`~raydrive.core.pipeline.RunStatus`  :data:`RUN_STATUS` (completed ->
                                                        SUCCEEDED, cancelled -> STOPPED...)
=================  ===================================  ==========================================

Lifecycle events (``raydrive_job_finished``) always carry a :class:`JobState` value.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

__all__ = ["RUN_STATUS", "TERMINAL_STATES", "JobState", "job_state", "to_ray_job_status"]


class JobState(str, Enum):
    """Status of a job. A ``str`` enum: ``JobState.SUCCEEDED == "SUCCEEDED"`` holds."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    UNKNOWN = "UNKNOWN"

    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED})
"""The states a job never leaves."""

RUN_STATUS: dict[str, JobState] = {
    "pending": JobState.PENDING,
    "running": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.STOPPED,
}
"""A pipeline run's status (:class:`~raydrive.core.pipeline.RunStatus` values) as a :class:`JobState`."""


def job_state(status: Any) -> JobState:
    """Any driver's status word as a :class:`JobState`: a JobState, Ray's ``JobStatus``, a
    ``RunStatus`` or their string values (case as each spells it); UNKNOWN for anything else."""
    if isinstance(status, JobState):
        return status
    text = getattr(status, "value", status)
    if not isinstance(text, str):
        return JobState.UNKNOWN
    if text in RUN_STATUS:
        return RUN_STATUS[text]
    try:
        return JobState(text)
    except ValueError:
        return JobState.UNKNOWN


def to_ray_job_status(state: Any) -> Any:
    """``state`` as Ray's ``JobStatus`` (ray-jobs-api's public type; imports Ray).

    :raises ValueError: UNKNOWN has no ``JobStatus``.
    """
    from ray.job_submission import JobStatus

    return JobStatus(job_state(state).value)
