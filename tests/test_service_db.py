"""The service's databases: backend selection, schema versions, migrate, retention (both backends)."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from raydrive.core.pipeline import RunStatus, utcnow
from raydrive.service.db import (
    HEAD,
    DatabaseUnavailableError,
    DatabaseURLError,
    SchemaVersionError,
    SQLStore,
    open_store,
    parse_database,
)
from raydrive.service.db.copy import DatabaseCopyError, copy_database
from raydrive.service.db.sqlite import SQLiteStore
from raydrive.service.models import (
    ActionSpec,
    CheckpointCreate,
    LogEntryCreate,
    PipelineCreate,
    ProgressReport,
    RunCreate,
    RunUpdate,
)
from raydrive.service.store import RecordNotFoundError
from tests.pg import pg_server, pg_url  # noqa: F401

# The schema of the first embedded store (PRAGMA user_version 1), as it created its files.
_LEGACY_SCHEMA = """
CREATE TABLE pipelines (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    pipeline_id TEXT NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE, status TEXT NOT NULL,
    event_seq INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX runs_by_status ON runs(status, seq);
CREATE INDEX runs_by_pipeline ON runs(pipeline_id);
CREATE TABLE run_events (run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    event TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, action_name TEXT NOT NULL,
    created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX checkpoints_by_run ON checkpoints(run_id, action_name, seq);
CREATE TABLE logs (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL, level TEXT NOT NULL, action_name TEXT, message TEXT NOT NULL);
CREATE INDEX logs_by_run ON logs(run_id, seq);
PRAGMA user_version = 1;
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each backend (PostgreSQL: a private server, see tests/pg.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    s = open_store(db_url)
    yield s
    s.close()


def _fill(store: SQLStore, runs: int = 3) -> list[str]:
    pipeline = store.create_pipeline(
        PipelineCreate(name="p", actions=[ActionSpec(name="a"), ActionSpec(name="b")])
    )
    ids = []
    for i in range(runs):
        run = store.create_run(pipeline.id, RunCreate(params={"i": i}))
        store.report_progress(run.id, ProgressReport(status="running", current_action="a"))
        store.create_checkpoint(
            run.id, CheckpointCreate(action_name="a", action_index=0, params_snapshot={"i": i})
        )
        store.append_logs(run.id, [LogEntryCreate(message=f"line {i}.{j}") for j in range(3)])
        ids.append(run.id)
    return ids


# -- selecting the backend


def test_postgres_url_is_not_taken_for_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: `--db postgresql://...` created a directory "postgresql:" and a SQLite file in it.
    monkeypatch.chdir(tmp_path)
    assert parse_database("postgresql://u:pw@db.example/runs") == (
        "postgresql",
        "postgresql://u:pw@db.example/runs",
    )
    assert parse_database("postgres://u@h/d")[0] == "postgresql"
    assert parse_database("sqlite:///rel.db") == ("sqlite", "rel.db")
    assert parse_database(str(tmp_path / "a.db")) == ("sqlite", str(tmp_path / "a.db"))
    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:1/none.*refused"):
        open_store("postgresql://nobody@127.0.0.1:1/none")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["mysql://u:secret@h/d", "sqlite://", "http://x/y.db"])
def test_an_unknown_scheme_is_a_clear_error(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatabaseURLError) as caught:
        open_store(url)
    assert "secret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    open_store(tmp_path / "private.db").close()
    assert stat.S_IMODE((tmp_path / "private.db").stat().st_mode) == 0o600


# -- schema versions


def test_a_database_of_the_first_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(_LEGACY_SCHEMA)
    done = '{"id":"r1","pipeline_id":"p1","status":"completed","completed_at":"2020-01-01T00:00:00Z"}'
    conn.execute("INSERT INTO pipelines (id, doc) VALUES ('p1', '{}')")
    conn.execute(
        "INSERT INTO runs (id, pipeline_id, status, event_seq, doc) VALUES ('r1', 'p1', 'completed', 1, ?)",
        (done,),
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match="raydrive service"):
        open_store(path, migrate=False)
    store = open_store(path)
    try:
        # The old finished run got its completion time, so retention can prune it.
        assert store.prune_finished(utcnow()) == 1
    finally:
        store.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)


def test_a_newer_schema_is_refused(db_url: str) -> None:
    open_store(db_url).close()
    store = open_store(db_url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        open_store(db_url)


def _start_openers(
    open_one: Callable[[], Any], count: int
) -> tuple[list[threading.Thread], list[BaseException]]:
    """Start ``count`` threads that each open a store and close it; the errors land in the list."""
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            open_one().close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, errors


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(db_url: str) -> None:
    threads, errors = _start_openers(lambda: open_store(db_url), 4)
    for thread in threads:
        thread.join()
    assert errors == []


def test_opening_a_fresh_file_waits_for_another_openers_lock(tmp_path: Path) -> None:
    # Another opener holds the write lock of a fresh file (still in its rollback journal): the
    # switch to WAL must wait for it, as SQLite's busy handler would, not fail at once with a raw
    # "database is locked" (SQLite skips its busy handler for this lock upgrade).
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailableError, match=r"WAL mode within 0\.2 s"):
            SQLiteStore(path, busy_timeout=0.2)
        (opener,), errors = _start_openers(lambda: SQLiteStore(path), 1)
    finally:
        other.execute("COMMIT")
        other.close()
    opener.join()
    assert errors == []
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- migrate


def test_migrate_copies_every_row(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    source = f"sqlite:///{tmp_path / 'old.db'}"
    old = open_store(source)
    ids = _fill(old, runs=5)
    old.update_run(ids[0], RunUpdate(status="completed", result={"ok": True}))
    expected = {
        run_id: (
            old.get_run(run_id),
            old.events_after(run_id, 0),
            old.list_checkpoints(run_id),
            old.list_logs(run_id),
        )
        for run_id in ids
    }
    old.close()
    counts = copy_database(source, pg_url)
    assert counts == {
        "pipelines": 1,
        "runs": 5,
        "run_events": 11,
        "checkpoints": 5,
        "logs": 15,
        "metric_points": 0,
    }
    new = open_store(pg_url)
    try:
        for run_id, (run, events, checkpoints, logs) in expected.items():
            assert new.get_run(run_id) == run
            assert new.events_after(run_id, 0) == events
            assert new.list_checkpoints(run_id) == checkpoints
            assert new.list_logs(run_id) == logs
        # New rows get new ids after the copied ones.
        more = new.append_logs(ids[1], [LogEntryCreate(message="after")])
        assert int(more[0].id) == 16
        assert new.report_progress(ids[1], ProgressReport(current_action="b")).current_action == "b"
    finally:
        new.close()
    with pytest.raises(DatabaseCopyError, match="empty"):
        copy_database(source, pg_url)


# -- retention


def test_retention_prunes_finished_runs_only(store: SQLStore) -> None:
    ids = _fill(store, runs=4)
    store.update_run(ids[0], RunUpdate(status="completed"))
    store.update_run(ids[1], RunUpdate(status="failed", error="x"))
    # Not yet old enough: nothing goes.
    assert store.prune_finished(utcnow() - timedelta(days=1)) == 0
    assert store.prune_finished(utcnow() + timedelta(seconds=1), batch=1) == 2
    remaining = {run.id for run in store.list_runs()}
    assert remaining == {ids[2], ids[3]}
    for gone in ids[:2]:
        with pytest.raises(LookupError):
            store.list_logs(gone)
    assert len(store.list_logs(ids[2])) == 3
    assert store.get_run(ids[3]).status is RunStatus.RUNNING


# -- the change feed


def test_the_change_feed_reports_changes_of_another_store(db_url: str) -> None:
    writer, watcher = open_store(db_url), open_store(db_url)
    seen: list[str | None] = []
    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch, args=(seen.append, stop), daemon=True)
    try:
        run_id = _fill(writer, runs=1)[0]
        thread.start()
        deadline = time.monotonic() + 10
        while run_id not in seen and time.monotonic() < deadline:
            writer.report_progress(run_id, ProgressReport(current_action="b"))
            stop.wait(0.05)
        assert run_id in seen
    finally:
        stop.set()
        thread.join(5)
        writer.close()
        watcher.close()


def test_the_cli_refuses_an_unreachable_postgres_url_and_creates_no_file(tmp_path: Path) -> None:
    # Before: `raydrive service --db postgresql://...` created ./postgresql:/... as a SQLite file
    # and served from it.
    import subprocess
    import sys

    code = "import sys; from raydrive.cli import main; sys.argv[0] = 'raydrive'; main()"
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    for url in ("postgresql://nobody@127.0.0.1:1/runs", "mysql://u:secret@127.0.0.1/runs"):
        done = subprocess.run(
            [sys.executable, "-c", code, "service", "--port", port, "--db", url],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "error:" in done.stderr and "secret" not in done.stderr + done.stdout
        assert list(tmp_path.iterdir()) == []


def test_the_migrate_command_copies_a_database(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    import subprocess
    import sys

    source = f"sqlite:///{tmp_path / 'old.db'}"
    old = open_store(source)
    ids = _fill(old, runs=2)
    old.close()
    code = "import sys; from raydrive.cli import main; sys.argv[0] = 'raydrive'; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "service", "migrate", "--from", source, "--to", pg_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "copied 2 runs" in done.stdout and "logs: 6 rows" in done.stdout
    new = open_store(pg_url)
    try:
        assert {run.id for run in new.list_runs()} == set(ids)
    finally:
        new.close()
    again = subprocess.run(
        [sys.executable, "-c", code, "service", "migrate", "--from", source, "--to", pg_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "empty database" in again.stderr


# -- a batch of reports (POST /runs/{id}/reports) on each backend


def test_a_batch_of_reports_is_one_transaction_and_one_event(store: SQLStore) -> None:
    run_id = _fill(store, runs=1)[0]
    before = store.latest_event(run_id).seq
    outcomes = store.apply_reports(
        run_id,
        [
            ("checkpoint", CheckpointCreate(action_name="b", action_index=1, result={"n": 2})),
            ("logs", [LogEntryCreate(message="batched")]),
            ("progress", ProgressReport(action_progress={"name": "nope", "status": "running"})),
            ("update", RunUpdate(status="completed", result={"n": 2})),
            ("logs", [LogEntryCreate(message="after the end")]),
        ],
    )
    assert [type(o).__name__ if o else None for o in outcomes] == [
        None, None, "InvalidReportError", None, "RunConflictError",
    ]  # fmt: skip
    assert store.latest_event(run_id).seq == before + 1 and store.latest_event(run_id).event == "completed"
    assert store.get_run(run_id).result == {"n": 2}
    assert [c.action_name for c in store.list_checkpoints(run_id)] == ["a", "b"]
    assert store.list_logs(run_id)[-1].message == "batched"
    with pytest.raises(RecordNotFoundError):
        store.apply_reports("no-such-run", [("logs", [LogEntryCreate(message="x")])])
