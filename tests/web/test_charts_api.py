"""The metric history behind the charts: the store on SQLite and PostgreSQL, and the HTTP API."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive.core.pipeline import ActionProgress
from raydrive.service.db import open_store
from raydrive.service.db.base import SQLStore
from raydrive.service.metric_points import MetricPoint, downsample, step_of
from raydrive.service.models import ActionSpec, LogEntryCreate, PipelineCreate, ProgressReport, RunCreate
from raydrive.service.server import ServiceServer
from raydrive.service.store import RecordNotFoundError
from tests.pg import pg_server, pg_url  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    url = f"sqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url)
    yield s
    s.close()


def _run(store: SQLStore, actions: tuple[str, ...] = ("train", "eval")) -> str:
    pipeline = store.create_pipeline(PipelineCreate(name="m", actions=[ActionSpec(name=a) for a in actions]))
    run = store.create_run(pipeline.id, RunCreate())
    store.report_progress(run.id, ProgressReport(status="running"))
    return run.id


def _points(store: SQLStore, run_id: str, **filters: Any) -> list[MetricPoint]:
    """The run's points, one per action, key and step (the store answers them as series)."""
    return [
        MetricPoint(s.action, s.key, step, value)
        for s in store.metric_series(run_id, **filters)
        for step, value in zip(s.steps, s.values, strict=True)
    ]


def _metrics(action: str, **metrics: Any) -> ProgressReport:
    return ProgressReport(action_progress=ActionProgress(name=action, status="running", metrics=metrics))


def test_every_report_of_a_batch_keeps_its_point(store: SQLStore) -> None:
    run_id = _run(store)
    # One batch, one change of the run (one event): still 300 points per key, not the last one.
    store.apply_reports(
        run_id, [("progress", _metrics("train", loss=1 / i, acc=i, step=i)) for i in range(1, 301)]
    )
    points = _points(store, run_id)
    assert [p.key for p in points[:1]] == ["acc"] and len(points) == 600
    loss = [p for p in points if p.key == "loss"]
    assert [p.step for p in loss] == list(range(1, 301))
    assert loss[-1] == MetricPoint("train", "loss", 300, 1 / 300)


def test_progress_only_reports_add_nothing_and_a_repeated_step_keeps_the_later_value(store: SQLStore) -> None:
    run_id = _run(store)
    store.report_progress(run_id, _metrics("train", loss=0.5, step=1))
    # The sink sends the action's last metrics again with every progress report.
    store.report_progress(
        run_id,
        ProgressReport(
            action_progress=ActionProgress(
                name="train", status="running", progress=0.5, metrics={"loss": 0.5, "step": 1}
            )
        ),
    )
    store.report_progress(run_id, _metrics("train", loss=0.25, step=1))  # the step reported again
    store.report_progress(run_id, _metrics("train", loss=0.125, step="2"))  # a step given as text
    assert [(p.step, p.value) for p in _points(store, run_id)] == [(1, 0.25), (2, 0.125)]


def test_unstepped_metrics_follow_report_order_and_non_numbers_are_left_out(store: SQLStore) -> None:
    run_id = _run(store)
    store.report_progress(run_id, _metrics("eval", f1=0.5, note="warm", ok=True, nested={"a": 1}))
    store.report_progress(run_id, _metrics("eval", f1=0.5, note="still"))  # f1 unchanged: no point
    store.report_progress(run_id, _metrics("eval", f1=0.75, step="epoch one"))  # not a number: report order
    points = _points(store, run_id)
    assert [(p.action, p.key, p.value) for p in points] == [("eval", "f1", 0.5), ("eval", "f1", 0.75)]
    assert points[0].step < points[1].step


def test_filters_and_unknown_run(store: SQLStore) -> None:
    run_id = _run(store)
    for i in range(1, 6):
        store.report_progress(run_id, _metrics("train", loss=1 / i, step=i))
        store.report_progress(run_id, _metrics("eval", loss=2 / i, step=i))
    assert {p.action for p in _points(store, run_id, key="loss")} == {"train", "eval"}
    since = _points(store, run_id, action="eval", since_step=3)
    assert [(p.action, p.step) for p in since] == [("eval", 4), ("eval", 5)]
    assert _points(store, run_id, key="nope") == []
    with pytest.raises(RecordNotFoundError):
        store.metric_series("no-such-run")
    series = store.metric_series(run_id, key="loss", since_step=2)
    assert [(x.action, x.points, x.steps) for x in series] == [
        ("eval", 3, [3, 4, 5]),
        ("train", 3, [3, 4, 5]),
    ]


def test_points_go_with_their_run(store: SQLStore) -> None:
    run_id = _run(store)
    store.report_progress(run_id, _metrics("train", loss=1.0, step=1))
    store.append_logs(run_id, [LogEntryCreate(message="x")])
    store.delete_run(run_id)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM metric_points").scalar() == 0


def test_a_database_of_revision_0003_gets_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    s = open_store(path)
    s.close()
    with sqlite3.connect(path) as conn:  # back to 0003: the table and its revision gone
        conn.execute("DROP TABLE metric_points")
        conn.execute("UPDATE alembic_version SET version_num = '0003'")
    s = open_store(path)
    try:
        run_id = _run(s)
        s.report_progress(run_id, _metrics("train", loss=1.0, step=1))
        assert len(_points(s, run_id)) == 1
    finally:
        s.close()


def test_downsample_keeps_extremes_ends_and_order() -> None:
    steps = list(range(10_000))
    values = [float(i % 100) for i in steps]
    values[5_555] = 1e9  # one spike
    values[7_777] = -1e9
    out_steps, out_values = downsample(steps, values, 200)
    assert len(out_steps) <= 200 and out_steps == sorted(out_steps)
    assert out_steps[0] == 0 and out_steps[-1] == 9_999
    assert 1e9 in out_values and -1e9 in out_values
    assert downsample(steps[:50], values[:50], 200) == (steps[:50], values[:50])


def test_step_of_bounds() -> None:
    assert [step_of(v, -1) for v in (3, 3.0, "12", " 7 ", True, 2.5, "epoch 3", 2**64, None)] == [
        3, 3, 12, 7, -1, -1, -1, -1, -1,
    ]  # fmt: skip


# -- the HTTP API


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with ServiceServer(db=tmp_path_factory.mktemp("metrics") / "runs.db", token="") as server:
        yield server


def test_api_answers_columns_thinned_on_request(service: ServiceServer) -> None:
    client = httpx.Client(base_url=service.url)
    pipeline = client.post("/api/v1/pipelines/", json={"name": "api", "actions": [{"name": "train"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]
    reports = [
        {
            "progress": {
                "action_progress": {
                    "name": "train",
                    "status": "running",
                    "metrics": {"loss": 1 / i, "step": i},
                }
            }
        }
        for i in range(1, 1001)
    ]
    assert client.post(f"/api/v1/runs/{run_id}/reports", json={"reports": reports}).status_code == 200
    full = client.get(f"/api/v1/runs/{run_id}/metrics").json()
    assert full["run_id"] == run_id and len(full["series"]) == 1
    series = full["series"][0]
    assert (series["action"], series["key"], series["points"], series["downsampled"]) == (
        "train",
        "loss",
        1000,
        False,
    )
    assert series["steps"] == list(range(1, 1001)) and series["values"][0] == 1.0
    thin = client.get(f"/api/v1/runs/{run_id}/metrics", params={"key": "loss", "max_points": 100}).json()
    assert thin["series"][0]["downsampled"] is True and len(thin["series"][0]["steps"]) <= 100
    assert thin["series"][0]["points"] == 1000
    since = client.get(f"/api/v1/runs/{run_id}/metrics", params={"since_step": 998, "action": "train"}).json()
    assert since["series"][0]["steps"] == [999, 1000]
    assert client.get(f"/api/v1/runs/{run_id}/metrics/", params={"key": "other"}).json()["series"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"since_step": "x"},
        {"since_step": str(2**70)},
        {"max_points": "1"},
        {"key": "k" * 600},
        {"key": ""},
        {"action": "a\x00b" * 300},
    ],
)
def test_api_refuses_bad_parameters_with_422(service: ServiceServer, params: dict[str, str]) -> None:
    client = httpx.Client(base_url=service.url)
    pipeline = client.post("/api/v1/pipelines/", json={"name": "bad", "actions": [{"name": "a"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]
    assert client.get(f"/api/v1/runs/{run_id}/metrics", params=params).status_code == 422


def test_api_unknown_run_is_404(service: ServiceServer) -> None:
    answer = httpx.get(f"{service.url}/api/v1/runs/no-such-run/metrics")
    assert answer.status_code == 404 and "no-such-run" in answer.text


def test_migrate_copies_the_metric_history(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    from raydrive.service.db.copy import copy_database

    source = f"sqlite:///{tmp_path / 'old.db'}"
    old = open_store(source)
    run_id = _run(old)
    old.apply_reports(run_id, [("progress", _metrics("train", loss=1 / i, step=i)) for i in range(1, 51)])
    points = _points(old, run_id)
    old.close()
    assert copy_database(source, pg_url)["metric_points"] == 50
    new = open_store(pg_url)
    try:
        assert _points(new, run_id) == points
        new.report_progress(run_id, _metrics("train", loss=0.0, step=51))  # the serial moved past the copy
        assert _points(new, run_id)[-1] == MetricPoint("train", "loss", 51, 0.0)
    finally:
        new.close()


def test_api_masks_a_secret_in_a_metric_name(service: ServiceServer) -> None:
    client = httpx.Client(base_url=service.url)
    pipeline = client.post("/api/v1/pipelines/", json={"name": "sec", "actions": [{"name": "a"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]
    metrics = {"loss of https://u:hunter2@db.example/x": 1.0, "loss": 0.5, "step": 1}
    report = {"action_progress": {"name": "a", "status": "running", "metrics": metrics}}
    assert client.post(f"/api/v1/runs/{run_id}/progress", json=report).status_code == 200
    keys = [s["key"] for s in client.get(f"/api/v1/runs/{run_id}/metrics").json()["series"]]
    assert keys == ["loss", "loss of https://u:***@db.example/x"]
    assert "hunter2" not in client.get(f"/api/v1/runs/{run_id}/metrics").text


def test_sparklines_answer_known_runs_and_refuse_bad_input(service: ServiceServer) -> None:
    client = httpx.Client(base_url=service.url)
    pipeline = client.post("/api/v1/pipelines/", json={"name": "spark", "actions": [{"name": "a"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]
    reports = [
        {
            "progress": {
                "action_progress": {"name": "a", "status": "running", "metrics": {"loss": 1 / i, "step": i}}
            }
        }
        for i in range(1, 301)
    ]
    client.post(f"/api/v1/runs/{run_id}/reports", json={"reports": reports})
    answer = client.get(
        "/ui/api/sparklines", params={"key": "loss", "run": [run_id, "no-such-run"], "points": 20}
    )
    lines = answer.json()["runs"]
    assert list(lines) == [run_id] and 2 <= len(lines[run_id]["values"]) <= 20
    assert lines[run_id]["values"][0] == 1.0 and lines[run_id]["values"][-1] == 1 / 300
    assert client.get("/ui/api/sparklines", params={"run": run_id}).status_code == 422  # no key
    assert client.get("/ui/api/sparklines", params={"key": "loss", "points": 1}).status_code == 422
    assert client.get("/ui/api/sparklines", params={"key": "loss", "run": ["x"] * 501}).status_code == 422


def test_action_attempts_read_back_from_the_retry_lines() -> None:
    from datetime import datetime, timedelta, timezone

    from raydrive.service.models import LogEntry, Run
    from raydrive.service.web.timeline import action_attempts

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    run = Run.model_validate(
        {
            "id": "r",
            "pipeline_id": "p",
            "created_at": start,
            "progress": [
                {
                    "name": "train",
                    "status": "completed",
                    "started_at": start,
                    "completed_at": start + timedelta(9),
                },
                {"name": "other", "status": "completed"},
            ],
        }
    )
    error = "RuntimeError: bad (really)\nRemote traceback:\n  line 1"

    def line(seconds: int, text: str, action: str | None = "train") -> LogEntry:
        stamp = start + timedelta(seconds=seconds)
        return LogEntry(
            id=str(seconds), run_id="r", timestamp=stamp, message=text, level="warning", action_name=action
        )

    warnings = [
        line(2, f"action 'train' failed ({error}); attempt 2 of 3 in 0.50 s"),
        line(3, "something else entirely"),
        line(5, "action 'train' failed (OSError: x); attempt 3 of 3 in 1.00 s"),
        line(6, "action 'train' failed (e); attempt 2 of 3 in 0.50 s", action=None),  # no action: not one
    ]
    attempts = action_attempts(run, warnings)
    assert list(attempts) == ["train"]
    got = attempts["train"]
    assert [(a["number"], a["state"]) for a in got] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert got[0]["error"] == error and got[1]["error"] == "OSError: x" and got[2]["error"] is None
    assert got[1]["started_at"] == (start + timedelta(seconds=2.5)).isoformat()
    assert got[2]["started_at"] == (start + timedelta(seconds=6)).isoformat()
    assert got[2]["ended_at"] == (start + timedelta(9)).isoformat()
