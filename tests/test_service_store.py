"""The store suite, on SQLite and PostgreSQL alike, and the run rules it applies, without HTTP."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from raydrive.core.pipeline import ActionProgress, ActionStatus, RunStatus
from raydrive.service.db import SQLStore, default_database, open_store
from raydrive.service.models import (
    ActionSpec,
    CheckpointCreate,
    LogEntryCreate,
    PipelineCreate,
    ProgressReport,
    RunCreate,
    RunUpdate,
)
from raydrive.service.rules import InvalidReportError, RunConflictError, apply_progress, apply_update
from raydrive.service.store import RecordNotFoundError
from tests.pg import pg_server, pg_url  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each backend (PostgreSQL: the private server of tests/pg.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    s = open_store(db_url)
    yield s
    s.close()


def _run(store: SQLStore, actions: tuple[str, ...] = ("a", "b")) -> str:
    pipeline = store.create_pipeline(PipelineCreate(name="p", actions=[ActionSpec(name=n) for n in actions]))
    return store.create_run(pipeline.id, RunCreate(params={"k": 1})).id


NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)
LATER = datetime(2024, 1, 2, tzinfo=timezone.utc)


def test_started_at_is_set_once_when_the_run_first_runs(store: SQLStore) -> None:
    run = store.get_run(_run(store))
    running = apply_progress(run, ProgressReport(status="running"), NOW)
    assert running is not None and running.started_at == NOW and running.completed_at is None
    again = apply_progress(running, ProgressReport(status="running"), LATER)
    assert again.started_at == NOW
    with pytest.raises(RunConflictError, match="pending"):
        apply_progress(running, ProgressReport(status="pending"), LATER)
    done = apply_update(again, RunUpdate(status="completed"), LATER)
    assert done.completed_at == LATER and done.status is RunStatus.COMPLETED


def test_a_terminal_run_never_changes_status(store: SQLStore) -> None:
    run = apply_update(store.get_run(_run(store)), RunUpdate(status="cancelled"), NOW)
    with pytest.raises(RunConflictError, match="cancelled"):
        apply_progress(run, ProgressReport(status="running"), LATER)
    with pytest.raises(RunConflictError):
        apply_update(run, RunUpdate(status="completed"), LATER)
    # Late reports without a new status change nothing at all.
    late = ProgressReport(action_progress=ActionProgress(name="a", status="running"))
    assert apply_progress(run, late, LATER) is None
    assert apply_progress(run, ProgressReport(status="cancelled"), LATER) is None
    # One rule for the pure functions and the store: a finished run takes no new result either,
    # and repeating what it holds is no change.
    with pytest.raises(RunConflictError, match="result"):
        apply_update(run, RunUpdate(result={"ok": 1}), LATER)
    assert apply_update(run, RunUpdate(status="cancelled", error=run.error), LATER) is None


def test_action_progress_replaces_by_name_and_keeps_its_times(store: SQLStore) -> None:
    run = store.get_run(_run(store))
    started = apply_progress(
        run, ProgressReport(action_progress=ActionProgress(name="a", status="running", progress=0.3)), NOW
    )
    assert [e.name for e in started.progress] == ["a", "b"]
    assert started.progress[0].started_at == NOW and started.progress[0].progress == 0.3
    done = apply_progress(
        started,
        ProgressReport(
            action_progress=ActionProgress(name="a", status="completed", progress=1.0, metrics={"loss": 0.1})
        ),
        LATER,
    )
    entry = done.progress[0]
    assert (entry.started_at, entry.completed_at, entry.metrics) == (NOW, LATER, {"loss": 0.1})
    # The rules return a new run and leave the one they were given alone.
    assert started.progress[0].status is ActionStatus.RUNNING
    assert started.progress[0].completed_at is None and run.progress[0].started_at is None
    with pytest.raises(InvalidReportError, match="no action 'c'"):
        apply_progress(done, ProgressReport(action_progress=ActionProgress(name="c")), LATER)
    skipped = apply_progress(
        done, ProgressReport(action_progress=ActionProgress(name="b", status="skipped")), LATER
    )
    assert skipped.progress[1].started_at is None and skipped.progress[1].completed_at == LATER


def test_runs_checkpoints_logs_and_event_numbers_survive_reopening(db_url: str) -> None:
    first = open_store(db_url)
    run_id = _run(first)
    first.report_progress(run_id, ProgressReport(status="running"))
    first.create_checkpoint(
        run_id, CheckpointCreate(action_name="a", action_index=0, params_snapshot={"x": 1})
    )
    first.append_logs(run_id, [LogEntryCreate(message="hello", action_name="a")])
    first.close()

    second = open_store(db_url)
    try:
        assert second.get_run(run_id).status is RunStatus.RUNNING
        assert second.latest_checkpoint(run_id).params_snapshot == {"x": 1}
        assert [e.message for e in second.list_logs(run_id)] == ["hello"]
        assert second.latest_event(run_id).seq == 2
        second.report_progress(run_id, ProgressReport(status="completed"))
        assert [(e.seq, e.event) for e in second.events_after(run_id, 1)] == [
            (2, "progress"),
            (3, "completed"),
        ]
    finally:
        second.close()


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    store = open_store(tmp_path / "wal.db")
    try:
        conn = sqlite3.connect(tmp_path / "wal.db")
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()
        with store.engine.connect() as writer:
            assert writer.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        store.close()


def test_concurrent_writers_in_two_stores_on_one_database_never_conflict(db_url: str) -> None:
    # Two store objects stand for two processes: on SQLite only BEGIN IMMEDIATE and the busy
    # timeout keep their writers apart, on PostgreSQL the run's row lock.
    stores = [open_store(db_url), open_store(db_url)]
    run_id = _run(stores[0], actions=tuple(f"a{n}" for n in range(8)))
    errors: list[BaseException] = []

    def write(n: int) -> None:
        store = stores[n % 2]
        try:
            for i in range(50):
                store.report_progress(
                    run_id,
                    ProgressReport(
                        action_progress=ActionProgress(name=f"a{n}", status="running", metrics={"i": i})
                    ),
                )
                store.append_logs(run_id, [LogEntryCreate(message=f"{n}-{i}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        events = stores[1].events_after(run_id, 0)
        assert [e.seq for e in events] == list(range(1, 8 * 50 + 2))
        final = stores[1].get_run(run_id)
        assert all(entry.metrics == {"i": 49} for entry in final.progress)
        assert len(stores[0].list_logs(run_id, limit=10_000)) == 400
    finally:
        for store in stores:
            store.close()


def test_request_text_never_becomes_sql(store: SQLStore) -> None:
    with pytest.raises(RecordNotFoundError):
        store.get_run("x' OR '1'='1")
    name = "p'); DROP TABLE runs; --"
    pipeline = store.create_pipeline(PipelineCreate(name=name, actions=[ActionSpec(name="a")]))
    assert store.get_pipeline(pipeline.id).name == name
    run_id = store.create_run(pipeline.id, RunCreate()).id
    assert store.list_logs(run_id, action_name="a' OR 1=1 --") == []


def test_old_events_are_pruned_but_the_latest_state_stays(db_url: str) -> None:
    store = open_store(db_url, event_retention=10)
    try:
        run_id = _run(store)
        for i in range(200):
            store.report_progress(run_id, ProgressReport(current_action=f"step {i}"))
        events = store.events_after(run_id, 0)
        assert events[-1].seq == 201
        assert len(events) < 10 + 64
        assert [e.seq for e in events] == list(range(events[0].seq, 202))
    finally:
        store.close()


def test_deleting_a_pipeline_deletes_its_runs_and_their_data(store: SQLStore) -> None:
    run_id = _run(store)
    pipeline_id = store.get_run(run_id).pipeline_id
    store.create_checkpoint(run_id, CheckpointCreate(action_name="a", action_index=0))
    store.delete_pipeline(pipeline_id)
    with pytest.raises(RecordNotFoundError) as missing:
        store.get_run(run_id)
    assert missing.value.kind == "run"
    with pytest.raises(RecordNotFoundError):
        store.latest_event(run_id)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM checkpoints").scalar() == 0


def test_latest_checkpoint_tells_a_missing_run_from_a_missing_checkpoint(store: SQLStore) -> None:
    run_id = _run(store)
    with pytest.raises(RecordNotFoundError) as none_yet:
        store.latest_checkpoint(run_id)
    assert none_yet.value.kind == "checkpoint"
    with pytest.raises(RecordNotFoundError) as no_run:
        store.latest_checkpoint("nope")
    assert no_run.value.kind == "run"
    first = store.create_checkpoint(run_id, CheckpointCreate(action_name="a", action_index=0))
    second = store.create_checkpoint(
        run_id, CheckpointCreate(action_name="b", action_index=1, status=ActionStatus.FAILED)
    )
    assert int(second.id) > int(first.id)
    assert store.latest_checkpoint(run_id).id == second.id
    assert store.latest_checkpoint(run_id, "a").id == first.id


def test_default_db_path_is_under_home_unless_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAYDRIVE_SERVICE_DB", raising=False)
    assert default_database() == str(Path.home() / ".raydrive" / "pipelines.db")
    monkeypatch.setenv("RAYDRIVE_SERVICE_DB", str(tmp_path / "x.db"))
    assert default_database() == str(tmp_path / "x.db")


def test_a_finished_run_takes_nothing_new_in_the_store_itself(store: SQLStore) -> None:
    # The HTTP layer checks first; the store checks again in its write transaction, so a change
    # racing the run's end (from another process, say) is refused as well.
    run_id = _run(store)
    with pytest.raises(InvalidReportError):
        store.report_progress(run_id, ProgressReport(action_progress=ActionProgress(name="zzz")))
    store.report_progress(run_id, ProgressReport(status="running"))
    with pytest.raises(RunConflictError, match="pending"):
        store.report_progress(run_id, ProgressReport(status="pending"))
    store.update_run(run_id, RunUpdate(status="completed", result={"ok": 1}))
    with pytest.raises(RunConflictError, match="checkpoint"):
        store.create_checkpoint(run_id, CheckpointCreate(action_name="a", action_index=0))
    with pytest.raises(RunConflictError, match="log"):
        store.append_logs(run_id, [LogEntryCreate(message="late")])
    with pytest.raises(RunConflictError, match="result"):
        store.update_run(run_id, RunUpdate(result={"ok": 2}))
    # Repeating what it holds is no change (a retried final PATCH succeeds).
    assert store.update_run(run_id, RunUpdate(status="completed", result={"ok": 1})).result == {"ok": 1}
    assert store.list_checkpoints(run_id) == [] and store.list_logs(run_id) == []
    assert store.latest_event(run_id).seq == 3


def test_the_service_errors_are_raydrive_errors_and_store_does_not_import_db() -> None:
    # Issue 25: one error tree (the CLI's one-line handler catches RaydriveError), no import cycle.
    import subprocess
    import sys

    from raydrive.core.errors import RaydriveError
    from raydrive.service.limits import TooManyLogEntriesError

    for error in (RecordNotFoundError, RunConflictError, InvalidReportError, TooManyLogEntriesError):
        assert issubclass(error, RaydriveError), error
    code = "import sys, raydrive.service.rules, raydrive.service.store\n"
    code += "print('raydrive.service.db' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "False\n"
    )
