"""Pipeline models shared by the pipeline service, its client and the pipeline executor.

The field names and status words are those of the pipeline service HTTP contract: a
:class:`PipelineProgress` is the service's *progress view* of a run, and an
:class:`ActionProgress` one entry of its ``progress`` list. Only pydantic and the standard
library are imported here, so a Ray worker can use these models cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, PlainSerializer

__all__ = [
    "DEFAULT_SERVICE_URL",
    "ActionFingerprint",
    "ActionProgress",
    "ActionStatus",
    "PipelineDefinition",
    "PipelineProgress",
    "RunStatus",
    "Timestamp",
    "utcnow",
]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def _as_utc(value: datetime) -> datetime:
    # A naive time is taken to be UTC already: the contract only ever carries UTC times.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


#: An aware UTC datetime that serializes to ISO-8601 with an explicit ``+00:00`` offset
#: (pydantic's default would write ``Z``; the contract asks for a UTC offset).
Timestamp = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
]


DEFAULT_SERVICE_URL = "http://127.0.0.1:8100"
"""Where the pipeline service listens by default (loopback; ``raydrive service``'s default)."""


class RunStatus(str, Enum):
    """Status of a pipeline run."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        """True for ``completed``, ``failed`` and ``cancelled``: the run will not change again."""
        return self in _TERMINAL_RUN_STATUSES

    def __str__(self) -> str:
        return self.value


_TERMINAL_RUN_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class ActionStatus(str, Enum):
    """Status of one action within a pipeline run."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"

    def is_done(self) -> bool:
        """True for ``completed``, ``failed`` and ``skipped``."""
        return self in (ActionStatus.COMPLETED, ActionStatus.FAILED, ActionStatus.SKIPPED)

    def __str__(self) -> str:
        return self.value


class ActionProgress(BaseModel):
    """Progress of one action of a run (one entry of the run's ``progress`` list).

    ``progress`` is the fraction done, from 0.0 to 1.0; ``progress_step`` names the step the
    action is in (for example ``"epoch 3/10"``); ``metrics`` holds any JSON values the action
    reports.
    """

    name: str = Field(min_length=1)
    status: ActionStatus = ActionStatus.PENDING
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    progress_step: str | None = None
    message: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    error: str | None = None


class PipelineProgress(BaseModel):
    """Progress of a pipeline run: the service's progress view of the run."""

    run_id: str
    pipeline_id: str | None = None
    status: RunStatus = RunStatus.PENDING
    current_action: str | None = None
    current_action_index: int | None = None
    progress: list[ActionProgress] = Field(default_factory=list)
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    error: str | None = None
    #: The attempt running (or that ended the run): 2 after the pipeline actor was restarted once.
    attempt: int = 1

    @property
    def actions(self) -> list[ActionProgress]:
        """The per-action progress entries (the same list as ``progress``)."""
        return self.progress

    def action(self, name: str) -> ActionProgress | None:
        """Return the progress entry of the action called ``name``, or None."""
        return next((entry for entry in self.progress if entry.name == name), None)

    @property
    def overall_progress(self) -> float:
        """Fraction of the whole run that is done, from 0.0 to 1.0.

        Completed and skipped actions count as done, a running action counts its own
        fraction, and the result is the average over all actions.
        """
        if not self.progress:
            return 1.0 if self.status is RunStatus.COMPLETED else 0.0
        total = 0.0
        for entry in self.progress:
            if entry.status in (ActionStatus.COMPLETED, ActionStatus.SKIPPED):
                total += 1.0
            elif entry.status is ActionStatus.RUNNING:
                total += entry.progress
        return total / len(self.progress)

    @property
    def completed_actions(self) -> int:
        """How many actions are completed or skipped."""
        done = (ActionStatus.COMPLETED, ActionStatus.SKIPPED)
        return sum(entry.status in done for entry in self.progress)

    @property
    def total_actions(self) -> int:
        """How many actions the run has."""
        return len(self.progress)


class ActionFingerprint(BaseModel):
    """What a run records of one action of its definition, so that a resume can tell whether it
    would run the same code: the entrypoint and a hash of the params model's JSON schema."""

    name: str = Field(min_length=1, max_length=512)
    entrypoint: str | None = Field(default=None, max_length=1024)
    params_schema: str | None = Field(
        default=None, max_length=128, description="sha256 of the params model's JSON schema."
    )


@dataclass
class PipelineDefinition:
    """Definition of a pipeline to execute.

    Attributes:
        name: Pipeline name.
        actions: List of action classes or ``module.Class`` entrypoint strings, run in order.
        description: Optional description.
    """

    name: str
    actions: list[type | str]
    description: str | None = None
