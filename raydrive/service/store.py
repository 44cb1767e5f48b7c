"""Storage behind the pipeline service: the one store interface, its records and errors.

:class:`PipelineStore` is everything the HTTP layer needs; its implementations (SQLite, the
embedded default, and PostgreSQL, on one set of tables) are in :mod:`raydrive.service.db`. The
rules of a run's life are the pure functions of :mod:`raydrive.service.rules`: a store loads a
run, calls them and saves the result with its event in one transaction.

Every change of a run is also written, in the same transaction, as a numbered *run event*
(``run_id``, ``seq``, event name, progress view as JSON): that table is what the progress stream
replays after a reconnect, and why stream ids keep growing across a restart of the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Protocol

from raydrive.core.errors import RaydriveError
from raydrive.core.pipeline import (
    PipelineProgress,
    RunStatus,
)
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
    "KeyRecord",
    "PipelineStore",
    "RecordNotFoundError",
    "RunEvent",
    "progress_view",
]


class RecordNotFoundError(RaydriveError, LookupError):
    """No pipeline, run or checkpoint with that key. ``kind`` says which one is missing."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found", kind=kind, key=key)


class RunEvent(NamedTuple):
    """One change of a run: ``seq`` grows by one with every change of that run."""

    seq: int
    event: str
    data: str

    @property
    def terminal(self) -> bool:
        """True when this is the run's terminal event (completed, failed or cancelled)."""
        return self.event != "progress"


class KeyRecord(NamedTuple):
    """A stored idempotency key: its request's digest, ``state`` ``running`` or ``done``, and
    for ``done`` the answer (status, headers as ``[name, value]`` pairs, body)."""

    digest: str
    state: str
    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes


class PipelineStore(Protocol):
    """What the pipeline service needs from its storage.

    Methods are synchronous and thread-safe; the service calls them from worker threads. Unknown
    pipelines or runs raise :class:`RecordNotFoundError`; a change the run's state refuses raises
    :class:`~raydrive.service.rules.RunConflictError`. Every method that changes a run stores
    the matching :class:`RunEvent` in the same transaction. A store may also offer
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
    def claim_key(
        self, slot: str, digest: str, owner: str, *, ttl: float, lease: float
    ) -> KeyRecord | None: ...
    def finish_key(
        self, slot: str, owner: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None: ...
    def drop_key(self, slot: str, owner: str) -> None: ...
    def add_session(self, nonce: str, expires_at: datetime) -> None: ...
    def has_session(self, nonce: str) -> bool: ...
    def drop_session(self, nonce: str) -> None: ...
    def close(self) -> None: ...


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
