"""Storage behind the pipeline service: the one store interface and the rules of a run's life.

:class:`PipelineStore` is everything the HTTP layer needs; its implementations (SQLite, the
embedded default, and PostgreSQL, on one set of tables) are in :mod:`raydrive.service.db`. The
rules of a run's life (when ``started_at`` and ``completed_at`` are set, that a terminal run never
changes status again, how an action's progress replaces the old entry) are plain functions over
the models (:func:`apply_update`, :func:`apply_progress`): a store loads a run, calls them and
saves the result with its event in one transaction.

Every change of a run is also written, in the same transaction, as a numbered *run event*
(``run_id``, ``seq``, event name, progress view as JSON): that table is what the progress stream
replays after a reconnect, and why stream ids keep growing across a restart of the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Protocol

from raydrive.core.pipeline import (
    ActionProgress,
    ActionStatus,
    PipelineProgress,
    RunStatus,
)
from raydrive.core.retry import Attempt
from raydrive.core.status import JobState, job_state
from raydrive.service.metric_points import MetricSeries
from raydrive.service.models import (
    Checkpoint,
    CheckpointCreate,
    LogEntry,
    LogEntryCreate,
    Pipeline,
    PipelineCreate,
    ProgressReport,
    Run,
    RunCreate,
    RunUpdate,
)

__all__ = [
    "PipelineStore",
    "RecordNotFoundError",
    "RunEvent",
    "TerminalRunError",
    "apply_progress",
    "apply_update",
    "progress_view",
]


class RecordNotFoundError(LookupError):
    """No pipeline, run or checkpoint with that key. ``kind`` says which one is missing."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class TerminalRunError(Exception):
    """A change would move a run out of its terminal status; nothing was changed."""

    def __init__(self, run_id: str, status: RunStatus, requested: RunStatus) -> None:
        super().__init__(
            f"run {run_id!r} is {status.value} and cannot become {requested.value}; "
            "a finished run never changes status (resume it as a new run instead)"
        )
        self.run_id = run_id
        self.status = status
        self.requested = requested


class RunEvent(NamedTuple):
    """One change of a run: ``seq`` grows by one with every change of that run."""

    seq: int
    event: str
    data: str

    @property
    def terminal(self) -> bool:
        """True when this is the run's terminal event (completed, failed or cancelled)."""
        return self.event != "progress"


class PipelineStore(Protocol):
    """What the pipeline service needs from its storage.

    Methods are synchronous and thread-safe; the service calls them from worker threads. Unknown
    pipelines or runs raise :class:`RecordNotFoundError`; a change that would take a terminal run
    to another status raises :class:`TerminalRunError`. Every method that changes a run stores the
    matching :class:`RunEvent` in the same transaction. A store may also offer
    ``watch(on_change, stop)``, a change feed of other processes' writes, which the service's
    :class:`~raydrive.service.broker.RunBroker` follows.
    """

    def create_pipeline(self, body: PipelineCreate) -> Pipeline: ...
    def list_pipelines(self, skip: int, limit: int) -> list[Pipeline]: ...
    def get_pipeline(self, pipeline_id: str) -> Pipeline: ...
    def delete_pipeline(self, pipeline_id: str) -> None: ...
    def create_run(self, pipeline_id: str, body: RunCreate) -> Run: ...
    def list_runs(self, status: RunStatus | None, skip: int, limit: int) -> list[Run]: ...
    def count_runs_by_status(self) -> dict[str, int]: ...
    def get_run(self, run_id: str) -> Run: ...
    def prune_finished(self, older_than: datetime, *, batch: int = 500) -> int: ...
    def update_run(self, run_id: str, body: RunUpdate) -> Run: ...
    def report_progress(self, run_id: str, body: ProgressReport) -> Run: ...
    def apply_reports(self, run_id: str, reports: list[tuple[str, Any]]) -> list[Exception | None]: ...
    def delete_run(self, run_id: str) -> None: ...
    def latest_event(self, run_id: str) -> RunEvent: ...
    def events_after(self, run_id: str, seq: int) -> list[RunEvent]: ...
    def create_checkpoint(self, run_id: str, body: CheckpointCreate) -> Checkpoint: ...
    def list_checkpoints(self, run_id: str) -> list[Checkpoint]: ...
    def latest_checkpoint(self, run_id: str, action_name: str | None = None) -> Checkpoint: ...
    def append_logs(self, run_id: str, entries: list[LogEntryCreate]) -> list[LogEntry]: ...
    def list_logs(
        self,
        run_id: str,
        *,
        action_name: str | None = None,
        level: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[LogEntry]: ...
    def metric_series(
        self, run_id: str, *, key: str | None = None, action: str | None = None, since_step: int | None = None
    ) -> list[MetricSeries]: ...
    def close(self) -> None: ...


# -- the rules of a run's life, shared by every store ------------------------------------------


def progress_view(run: Run) -> PipelineProgress:
    """The progress view of ``run`` (what ``GET .../progress`` and the stream send)."""
    return PipelineProgress(
        run_id=run.id,
        pipeline_id=run.pipeline_id,
        status=run.status,
        current_action=run.current_action,
        current_action_index=run.current_action_index,
        progress=run.progress,
        started_at=run.started_at,
        completed_at=run.completed_at,
        error=run.error,
        attempt=run.attempt,
    )


def _event_for(run: Run, seq: int) -> RunEvent:
    name = run.status.value if run.status.is_terminal() else "progress"
    return RunEvent(seq, name, progress_view(run).model_dump_json())


def _set_status(run: Run, status: RunStatus, now: datetime) -> None:
    if run.status.is_terminal() and status is not run.status:
        raise TerminalRunError(run.id, run.status, status)
    run.status = status
    if status is RunStatus.RUNNING and run.started_at is None:
        run.started_at = now
    if status.is_terminal() and run.completed_at is None:
        run.completed_at = now
    if status.is_terminal() and run.attempts and run.attempts[-1].state == JobState.RUNNING.value:
        # The attempt that ended the run ends with it (its actor sends no report of its own).
        last = run.attempts[-1].model_copy(
            update={"state": job_state(status.value).value, "ended_at": now.timestamp(), "error": run.error}
        )
        run.attempts = [*run.attempts[:-1], last]


def _merge_attempt(run: Run, attempt: Attempt) -> None:
    # Replaced by number, kept in order; the run's ``attempt`` is the newest one reported.
    attempts = {a.number: a for a in run.attempts}
    attempts[attempt.number] = attempt
    run.attempts = [attempts[n] for n in sorted(attempts)]
    run.attempt = max(run.attempt, attempt.number)


def apply_update(run: Run, body: RunUpdate, now: datetime) -> Run | None:
    """Return ``run`` changed by a PATCH, or None when nothing changes.

    A terminal run keeps its status (another status raises :class:`TerminalRunError`); its
    ``result`` and ``error`` may still be set, so an executor can attach the result after it
    marked the run completed.
    """
    fields = body.model_fields_set
    # A shallow copy is enough: fields are only ever replaced, never changed in place.
    new = run.model_copy()
    if "result" in fields:
        new.result = body.result
    if "error" in fields:
        new.error = body.error
    if "status" in fields and body.status is not None:
        _set_status(new, body.status, now)  # after the error: the last attempt ends with it
    return None if new == run else new


def _merge_action(
    entries: list[ActionProgress], report: ActionProgress, now: datetime
) -> list[ActionProgress]:
    entry = report.model_copy()
    old = next((e for e in entries if e.name == entry.name), None)
    # The reporter may leave the times out: keep the first start, stamp the first finish.
    if entry.started_at is None and entry.status is not ActionStatus.SKIPPED:
        if old is not None and old.started_at is not None:
            entry.started_at = old.started_at
        elif entry.status is not ActionStatus.PENDING:
            entry.started_at = now
    if entry.completed_at is None and entry.status.is_done():
        entry.completed_at = old.completed_at if old and old.completed_at else now
    if old is None:
        return [*entries, entry]
    return [entry if e.name == entry.name else e for e in entries]


def apply_progress(run: Run, body: ProgressReport, now: datetime) -> Run | None:
    """Return ``run`` changed by a progress report, or None when the report changes nothing.

    A terminal run is frozen: a report naming another status raises :class:`TerminalRunError`
    (the service answers 409), and any other report is ignored, so a retried or late report of a
    finished or cancelled run changes nothing.
    """
    fields = body.model_fields_set
    if run.status.is_terminal():
        if "status" in fields and body.status is not None and body.status is not run.status:
            raise TerminalRunError(run.id, run.status, body.status)
        return None
    new = run.model_copy()  # fields are replaced, never changed in place (see apply_update)
    if "current_action" in fields:
        new.current_action = body.current_action
    if "current_action_index" in fields:
        new.current_action_index = body.current_action_index
    if "error" in fields:
        new.error = body.error
    if body.action_progress is not None:
        new.progress = _merge_action(new.progress, body.action_progress, now)
    if body.attempt is not None:
        _merge_attempt(new, body.attempt)
    if "status" in fields and body.status is not None:
        _set_status(new, body.status, now)
    return new


def __getattr__(name: str) -> Any:
    # The SQLite store moved to raydrive.service.db (one implementation for SQLite and
    # PostgreSQL); imported lazily, since that package builds on this module.
    if name == "SQLiteStore":
        from raydrive.service.db.sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
