"""Request and response bodies of the pipeline service HTTP API.

Field names follow ``PIPELINE_SERVICE_API.md`` exactly. Request models refuse unknown fields
(``extra="forbid"``): a misspelt ``parms`` answers 422 naming it, as Stripe answers "Received
unknown parameter", instead of creating a run without its params. Response models ignore
unknown fields, so a client keeps reading the answers of a newer service. Every known field is
validated, and a bad one answers 422 naming it. Only pydantic is imported here, so the
client (and a Ray worker using it) does not pull in FastAPI.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raydrive.core.pipeline import ActionFingerprint, ActionProgress, ActionStatus, RunStatus, Timestamp
from raydrive.core.retry import Attempt

__all__ = [
    "ActionSpec",
    "Checkpoint",
    "CheckpointCreate",
    "LogEntry",
    "LogEntryCreate",
    "LogLevel",
    "LogsAppend",
    "Pipeline",
    "PipelineCreate",
    "ProgressAck",
    "ProgressReport",
    "Report",
    "ReportBatch",
    "ReportBatchAck",
    "ReportResult",
    "Run",
    "RunCreate",
    "RunStatusView",
    "RunUpdate",
]

_NAME = Field(min_length=1, max_length=512)
_REQUEST = ConfigDict(extra="forbid")
_RESPONSE = ConfigDict(extra="ignore")
#: The largest number the service stores or compares (SQLite and PostgreSQL ``BIGINT``); above
#: it a value is refused with 422 instead of overflowing the database driver.
MAX_INT = 2**63 - 1


class ActionSpec(BaseModel):
    """One action of a pipeline: its name (unique within the pipeline) and entrypoint."""

    model_config = _REQUEST

    name: str = _NAME
    entrypoint: str | None = Field(default=None, max_length=1024)


class PipelineCreate(BaseModel):
    """Body of ``POST /api/v1/pipelines/``."""

    model_config = _REQUEST

    name: str = _NAME
    actions: list[ActionSpec] = Field(min_length=1)
    description: str | None = None

    @field_validator("actions")
    @classmethod
    def _unique_names(cls, actions: list[ActionSpec]) -> list[ActionSpec]:
        # Progress reports address actions by name, so two actions with one name would collide.
        seen: set[str] = set()
        for action in actions:
            if action.name in seen:
                raise ValueError(f"action names must be unique; {action.name!r} repeats")
            seen.add(action.name)
        return actions


class Pipeline(PipelineCreate):
    """A stored pipeline."""

    model_config = _RESPONSE

    id: str
    created_at: Timestamp


_MAX_ACTIONS = 10_000
_ID = Field(default=None, max_length=64)


class RunCreate(BaseModel):
    """Body of ``POST /api/v1/pipelines/{pipeline_id}/runs/``.

    Beyond the contract: ``fingerprint`` (one entry per action: what a later resume compares),
    ``resumed_from`` (the run this one resumes), ``max_attempts`` (how many times the pipeline
    actor may start: 1 + its restarts).
    """

    model_config = _REQUEST

    params: dict[str, Any] = Field(default_factory=dict)
    work_dir: str | None = None
    fingerprint: list[ActionFingerprint] | None = Field(default=None, max_length=_MAX_ACTIONS)
    resumed_from: str | None = _ID
    max_attempts: int | None = Field(default=None, ge=1, le=1000)


class Run(BaseModel):
    """A pipeline run as the service stores it."""

    id: str
    pipeline_id: str
    status: RunStatus = RunStatus.PENDING
    params: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: str | None = None
    current_action: str | None = None
    current_action_index: int | None = None
    progress: list[ActionProgress] = Field(default_factory=list)
    work_dir: str | None = None
    created_at: Timestamp
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    #: Beyond the contract: the attempt running (or that ended the run), its attempts so far,
    #: the definition's fingerprint, the run it resumed, how many attempts it may have.
    attempt: int = 1
    attempts: list[Attempt] = Field(default_factory=list)
    fingerprint: list[ActionFingerprint] | None = None
    resumed_from: str | None = None
    max_attempts: int | None = None


class RunUpdate(BaseModel):
    """Body of ``PATCH /api/v1/runs/{run_id}``: only the fields present are changed."""

    model_config = _REQUEST

    status: RunStatus | None = None
    result: Any = None
    error: str | None = None


class ProgressReport(BaseModel):
    """Body of ``POST /api/v1/runs/{run_id}/progress``: only the fields present are changed.

    ``action_progress`` replaces the run's entry with the same ``name`` (or is appended when the
    run has none).
    """

    model_config = _REQUEST

    current_action: str | None = None
    current_action_index: int | None = Field(default=None, ge=0, le=MAX_INT)
    status: RunStatus | None = None
    action_progress: ActionProgress | None = None
    error: str | None = None
    #: Beyond the contract: one attempt of the run (replaces the one with the same number).
    attempt: Attempt | None = None

    @field_validator("attempt")
    @classmethod
    def _attempt_bound(cls, value: Attempt | None) -> Attempt | None:
        if value is not None and value.number > 1000:
            raise ValueError("an attempt number is at most 1000 (max_restarts is bounded too)")
        return value


class ProgressAck(BaseModel):
    """Answer to a progress report: what the reporter needs, not the whole run (whose params
    and result may be large)."""

    id: str
    status: RunStatus
    current_action: str | None = None
    current_action_index: int | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None


class RunStatusView(BaseModel):
    """Answer of ``GET /api/v1/runs/{run_id}/status`` and ``POST .../cancel`` (cheap to poll)."""

    id: str
    status: RunStatus
    cancel_requested: bool = False


class CheckpointCreate(BaseModel):
    """Body of ``POST /api/v1/runs/{run_id}/checkpoints/``."""

    model_config = _REQUEST

    action_name: str = _NAME
    action_index: int = Field(ge=0, le=MAX_INT)
    status: ActionStatus = ActionStatus.COMPLETED
    params_snapshot: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    artifacts_path: str | None = None


class Checkpoint(CheckpointCreate):
    """A stored checkpoint; ``id`` grows with every checkpoint the service stores."""

    model_config = _RESPONSE

    id: str
    run_id: str
    created_at: Timestamp


class LogLevel(str, Enum):
    """Level of a log entry (the levels of the system raydrive replaces)."""

    DEBUG = "debug"
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    DANGER = "danger"
    ERROR = "error"
    CRITICAL = "critical"

    def __str__(self) -> str:
        return self.value


class LogEntryCreate(BaseModel):
    """One entry of ``POST /api/v1/runs/{run_id}/logs/``."""

    model_config = _REQUEST

    message: str
    level: LogLevel = LogLevel.INFO
    action_name: str | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class LogsAppend(BaseModel):
    """Body of ``POST /api/v1/runs/{run_id}/logs/``."""

    model_config = _REQUEST

    # The size of a batch is checked by the service against its configured limit
    # (``max_log_entries``, see :mod:`raydrive.service.limits`), answered 422 naming it.
    entries: list[LogEntryCreate]


class LogEntry(LogEntryCreate):
    """A stored log entry; ``id`` grows with every entry the service stores."""

    model_config = _RESPONSE

    id: str
    run_id: str
    timestamp: Timestamp


#: The most reports one ``POST /api/v1/runs/{run_id}/reports`` carries (422 above it).
MAX_REPORTS = 1000


class Report(BaseModel):
    """One report of a batch: exactly one of its fields, applied as its own endpoint would."""

    model_config = _REQUEST

    progress: ProgressReport | None = None
    checkpoint: CheckpointCreate | None = None
    logs: LogsAppend | None = None
    update: RunUpdate | None = None

    @model_validator(mode="after")
    def _one(self) -> Report:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "a report has exactly one of progress, checkpoint, logs, update "
                f"(this one has {', '.join(given) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        """The name of the field given: ``progress``, ``checkpoint``, ``logs`` or ``update``."""
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)


class ReportBatch(BaseModel):
    """Body of ``POST /api/v1/runs/{run_id}/reports`` (beyond the contract): reports applied in order."""

    model_config = _REQUEST

    reports: list[Report] = Field(max_length=MAX_REPORTS)


class ReportResult(BaseModel):
    """What became of one report: the status its own endpoint would have answered, and its
    ``detail`` when refused."""

    status: int
    detail: Any = None


class ReportBatchAck(BaseModel):
    """Answer of ``POST /api/v1/runs/{run_id}/reports``: one result per report, in order."""

    results: list[ReportResult]
