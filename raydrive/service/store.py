"""Storage behind the pipeline service: one small interface and its embedded SQLite implementation.

:class:`PipelineStore` is everything the HTTP layer needs. The rules of a run's life (when
``started_at`` and ``completed_at`` are set, that a terminal run never changes status again, how an
action's progress replaces the old entry) are plain functions over the models
(:func:`apply_update`, :func:`apply_progress`), so another store (PostgreSQL, say) only has to
load a run, call them and save the result with its event in one transaction.

Every change of a run is also written, in the same transaction, as a numbered *run event*
(``run_id``, ``seq``, event name, progress view as JSON): that table is what the progress stream
replays after a reconnect, and why stream ids keep growing across a restart of the service.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple, Protocol

from raydrive.core.pipeline import (
    ActionProgress,
    ActionStatus,
    PipelineProgress,
    RunStatus,
    utcnow,
)
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
    "SQLiteStore",
    "TerminalRunError",
    "apply_progress",
    "apply_update",
    "default_db_path",
    "progress_view",
]

#: Environment variable that overrides the default database file.
DB_ENV = "RAYDRIVE_SERVICE_DB"


def default_db_path() -> Path:
    """``$RAYDRIVE_SERVICE_DB`` when set, else ``~/.raydrive/pipelines.db``."""
    return Path(os.environ.get(DB_ENV) or Path.home() / ".raydrive" / "pipelines.db").expanduser()


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
    matching :class:`RunEvent` in the same transaction.
    """

    def create_pipeline(self, body: PipelineCreate) -> Pipeline: ...
    def list_pipelines(self, skip: int, limit: int) -> list[Pipeline]: ...
    def get_pipeline(self, pipeline_id: str) -> Pipeline: ...
    def delete_pipeline(self, pipeline_id: str) -> None: ...
    def create_run(self, pipeline_id: str, body: RunCreate) -> Run: ...
    def list_runs(self, status: RunStatus | None, skip: int, limit: int) -> list[Run]: ...
    def get_run(self, run_id: str) -> Run: ...
    def update_run(self, run_id: str, body: RunUpdate) -> Run: ...
    def report_progress(self, run_id: str, body: ProgressReport) -> Run: ...
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


def apply_update(run: Run, body: RunUpdate, now: datetime) -> Run | None:
    """Return ``run`` changed by a PATCH, or None when nothing changes.

    A terminal run keeps its status (another status raises :class:`TerminalRunError`); its
    ``result`` and ``error`` may still be set, so an executor can attach the result after it
    marked the run completed.
    """
    fields = body.model_fields_set
    # A shallow copy is enough: fields are only ever replaced, never changed in place.
    new = run.model_copy()
    if "status" in fields and body.status is not None:
        _set_status(new, body.status, now)
    if "result" in fields:
        new.result = body.result
    if "error" in fields:
        new.error = body.error
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
    if "status" in fields and body.status is not None:
        _set_status(new, body.status, now)
    return new


# -- SQLite ------------------------------------------------------------------------------------

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    pipeline_id TEXT NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status, seq);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs(pipeline_id);
CREATE TABLE IF NOT EXISTS run_events (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    action_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_by_run ON checkpoints(run_id, action_name, seq);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    level TEXT NOT NULL,
    action_name TEXT,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_run ON logs(run_id, seq);
"""


def _db_time(value: datetime) -> str:
    # Fixed width and one offset, so that timestamps compare correctly as text in SQL.
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


class SQLiteStore:
    """The embedded default store: one SQLite file in WAL mode.

    Writes go through one connection behind an in-process lock and start with ``BEGIN
    IMMEDIATE``, so concurrent writers queue instead of failing with "database is locked" (the
    busy timeout covers a second process on the same file). Reads use one connection per thread
    and never wait for the writer. ``synchronous=NORMAL`` keeps WAL commits durable across a
    process crash without an fsync per commit.

    :param path: database file; its directory is created. Defaults to :func:`default_db_path`.
    :param busy_timeout: seconds to wait for another process's write lock.
    :param event_retention: run events kept per run for stream replay; older ones are pruned.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = 30.0,
        event_retention: int = 1000,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout = busy_timeout
        self._event_retention = max(1, event_retention)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer = self._connect()
        with self._write() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never implicit.
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def close(self) -> None:
        """Close every connection of this store."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    # -- pipelines

    def create_pipeline(self, body: PipelineCreate) -> Pipeline:
        """Store a new pipeline."""
        pipeline = Pipeline(id=str(uuid.uuid4()), created_at=utcnow(), **body.model_dump())
        with self._write() as conn:
            conn.execute(
                "INSERT INTO pipelines (id, doc) VALUES (?, ?)", (pipeline.id, pipeline.model_dump_json())
            )
        return pipeline

    def list_pipelines(self, skip: int = 0, limit: int = 100) -> list[Pipeline]:
        """Pipelines, newest first."""
        rows = self._reader().execute(
            "SELECT doc FROM pipelines ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, skip)
        )
        return [Pipeline.model_validate_json(doc) for (doc,) in rows]

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """The pipeline, or :class:`RecordNotFoundError`."""
        row = self._reader().execute("SELECT doc FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone()
        if row is None:
            raise RecordNotFoundError("pipeline", pipeline_id)
        return Pipeline.model_validate_json(row[0])

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete the pipeline with its runs and everything stored for them."""
        with self._write() as conn:
            if conn.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,)).rowcount == 0:
                raise RecordNotFoundError("pipeline", pipeline_id)

    # -- runs

    def create_run(self, pipeline_id: str, body: RunCreate) -> Run:
        """Store a new ``pending`` run with one ``pending`` action progress per action."""
        pipeline = self.get_pipeline(pipeline_id)
        run = Run(
            id=str(uuid.uuid4()),
            pipeline_id=pipeline.id,
            params=body.params,
            work_dir=body.work_dir,
            progress=[ActionProgress(name=action.name) for action in pipeline.actions],
            created_at=utcnow(),
        )
        event = _event_for(run, 1)
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO runs (id, pipeline_id, status, event_seq, doc) VALUES (?, ?, ?, ?, ?)",
                    (run.id, run.pipeline_id, run.status.value, event.seq, run.model_dump_json()),
                )
            except sqlite3.IntegrityError:
                # The pipeline was deleted between the read above and this write.
                raise RecordNotFoundError("pipeline", pipeline_id) from None
            conn.execute(
                "INSERT INTO run_events (run_id, seq, event, data) VALUES (?, ?, ?, ?)", (run.id, *event)
            )
        return run

    def list_runs(self, status: RunStatus | None = None, skip: int = 0, limit: int = 100) -> list[Run]:
        """Runs, newest first, optionally only those with ``status``."""
        if status is None:
            rows = self._reader().execute(
                "SELECT doc FROM runs ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, skip)
            )
        else:
            rows = self._reader().execute(
                "SELECT doc FROM runs WHERE status = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
                (status.value, limit, skip),
            )
        return [Run.model_validate_json(doc) for (doc,) in rows]

    def count_runs_by_status(self) -> dict[str, int]:
        """How many runs have each status (for ``/metrics``; statuses without runs are left out)."""
        rows = self._reader().execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
        return {status: count for status, count in rows}

    def get_run(self, run_id: str) -> Run:
        """The run, or :class:`RecordNotFoundError`."""
        row = self._reader().execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RecordNotFoundError("run", run_id)
        return Run.model_validate_json(row[0])

    def _change_run(self, run_id: str, change: _RunChange) -> Run:
        with self._write() as conn:
            row = conn.execute("SELECT doc, event_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RecordNotFoundError("run", run_id)
            run = Run.model_validate_json(row[0])
            new = change(run, utcnow())
            if new is None:
                return run
            event = _event_for(new, row[1] + 1)
            conn.execute(
                "UPDATE runs SET status = ?, event_seq = ?, doc = ? WHERE id = ?",
                (new.status.value, event.seq, new.model_dump_json(), run_id),
            )
            conn.execute(
                "INSERT INTO run_events (run_id, seq, event, data) VALUES (?, ?, ?, ?)", (run_id, *event)
            )
            # Prune in batches rather than on every write: replay only needs recent events.
            if event.seq % 64 == 0 and event.seq > self._event_retention:
                conn.execute(
                    "DELETE FROM run_events WHERE run_id = ? AND seq <= ?",
                    (run_id, event.seq - self._event_retention),
                )
            return new

    def update_run(self, run_id: str, body: RunUpdate) -> Run:
        """Apply a PATCH (see :func:`apply_update`)."""
        return self._change_run(run_id, lambda run, now: apply_update(run, body, now))

    def report_progress(self, run_id: str, body: ProgressReport) -> Run:
        """Apply a progress report (see :func:`apply_progress`)."""
        return self._change_run(run_id, lambda run, now: apply_progress(run, body, now))

    def delete_run(self, run_id: str) -> None:
        """Delete the run with its events, checkpoints and logs."""
        with self._write() as conn:
            if conn.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount == 0:
                raise RecordNotFoundError("run", run_id)

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise RecordNotFoundError("run", run_id)

    # -- run events

    def latest_event(self, run_id: str) -> RunEvent:
        """The run's newest event: its current state."""
        row = (
            self._reader()
            .execute(
                "SELECT seq, event, data FROM run_events WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                (run_id,),
            )
            .fetchone()
        )
        if row is None:
            raise RecordNotFoundError("run", run_id)
        return RunEvent(*row)

    def events_after(self, run_id: str, seq: int) -> list[RunEvent]:
        """The run's events with a number above ``seq``, oldest first."""
        conn = self._reader()
        rows = conn.execute(
            "SELECT seq, event, data FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, seq)
        ).fetchall()
        if not rows:
            self._require_run(conn, run_id)
        return [RunEvent(*row) for row in rows]

    # -- checkpoints

    def create_checkpoint(self, run_id: str, body: CheckpointCreate) -> Checkpoint:
        """Store a checkpoint of the run."""
        created_at = utcnow()
        with self._write() as conn:
            self._require_run(conn, run_id)
            cursor = conn.execute(
                "INSERT INTO checkpoints (run_id, action_name, created_at, doc) VALUES (?, ?, ?, ?)",
                (run_id, body.action_name, _db_time(created_at), body.model_dump_json()),
            )
        return Checkpoint(id=str(cursor.lastrowid), run_id=run_id, created_at=created_at, **body.model_dump())

    @staticmethod
    def _checkpoint(run_id: str, row: tuple[int, str, str]) -> Checkpoint:
        seq, created_at, doc = row
        return Checkpoint.model_validate(
            {**json.loads(doc), "id": str(seq), "run_id": run_id, "created_at": created_at}
        )

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """The run's checkpoints, oldest first."""
        conn = self._reader()
        self._require_run(conn, run_id)
        rows = conn.execute(
            "SELECT seq, created_at, doc FROM checkpoints WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [self._checkpoint(run_id, row) for row in rows]

    def latest_checkpoint(self, run_id: str, action_name: str | None = None) -> Checkpoint:
        """The run's newest checkpoint (of ``action_name`` when given).

        Raises :class:`RecordNotFoundError` with ``kind`` ``"run"`` for an unknown run and
        ``"checkpoint"`` when the run has no such checkpoint.
        """
        conn = self._reader()
        self._require_run(conn, run_id)
        if action_name is None:
            row = conn.execute(
                "SELECT seq, created_at, doc FROM checkpoints WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                (run_id,),
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT seq, created_at, doc FROM checkpoints WHERE run_id = ? AND action_name = ?"
                " ORDER BY seq DESC LIMIT 1",
                (run_id, action_name),
            ).fetchone()
        if row is None:
            raise RecordNotFoundError("checkpoint", action_name or run_id)
        return self._checkpoint(run_id, row)

    # -- logs

    def append_logs(self, run_id: str, entries: list[LogEntryCreate]) -> list[LogEntry]:
        """Store log entries of the run; they share one timestamp and get growing ids."""
        timestamp = utcnow()
        stored: list[LogEntry] = []
        with self._write() as conn:
            self._require_run(conn, run_id)
            for entry in entries:
                cursor = conn.execute(
                    "INSERT INTO logs (run_id, timestamp, level, action_name, message)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (run_id, _db_time(timestamp), entry.level.value, entry.action_name, entry.message),
                )
                stored.append(
                    LogEntry(
                        id=str(cursor.lastrowid), run_id=run_id, timestamp=timestamp, **entry.model_dump()
                    )
                )
        return stored

    def list_logs(
        self,
        run_id: str,
        *,
        action_name: str | None = None,
        level: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[LogEntry]:
        """The run's log entries, oldest first; ``since`` keeps entries stamped after it."""
        conn = self._reader()
        self._require_run(conn, run_id)
        # Only fixed SQL fragments are joined here; every value travels as a parameter.
        clauses, args = ["run_id = ?"], [run_id]
        if action_name is not None:
            clauses.append("action_name = ?")
            args.append(action_name)
        if level is not None:
            clauses.append("level = ?")
            args.append(level)
        if since is not None:
            clauses.append("timestamp > ?")
            args.append(_db_time(since if since.tzinfo else since.replace(tzinfo=timezone.utc)))
        rows = conn.execute(
            "SELECT seq, timestamp, level, action_name, message FROM logs WHERE "
            + " AND ".join(clauses)
            + " ORDER BY seq LIMIT ?",
            (*args, limit),
        )
        return [
            LogEntry(
                id=str(seq),
                run_id=run_id,
                timestamp=datetime.fromisoformat(ts),
                level=lvl,
                action_name=action,
                message=message,
            )
            for seq, ts, lvl, action, message in rows
        ]


class _RunChange(Protocol):
    def __call__(self, run: Run, now: datetime) -> Run | None: ...
