"""Job status words shared by the job drivers."""

from __future__ import annotations

from enum import Enum

__all__ = ["JobState"]


class JobState(str, Enum):
    """Status of a job. A ``str`` enum: ``JobState.SUCCEEDED == "SUCCEEDED"`` holds."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    UNKNOWN = "UNKNOWN"

    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.STOPPED)

    def __str__(self) -> str:
        return self.value
