"""The pipeline service under bad input (issue 9, issue 14): a real service on loopback, real
SQLite, real httpx. Every probe here answered 200 or 500 on the code before the fix."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive.core.errors import ServiceError
from raydrive.service.client import AsyncPipelineServiceClient, PipelineServiceClient
from raydrive.service.db import open_store
from raydrive.service.server import ServiceServer, start_service
from tests.services import tokenless_service


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)
    for name in ("MAX_BODY_BYTES", "MAX_JSON_DEPTH", "MAX_LOG_ENTRIES"):
        monkeypatch.delenv(f"RAYDRIVE_SERVICE_{name}", raising=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with tokenless_service(tmp_path_factory.mktemp("input")) as svc:
        yield svc


@pytest.fixture
def http(service: ServiceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        yield client


def _pipeline(http: httpx.Client, actions: tuple[str, ...] = ("download", "train")) -> dict:
    body = {"name": "p", "actions": [{"name": name} for name in actions]}
    response = http.post("/api/v1/pipelines/", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _run(http: httpx.Client, **body: Any) -> dict:
    response = http.post(f"/api/v1/pipelines/{_pipeline(http)['id']}/runs/", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def _finished(http: httpx.Client, status: str = "completed") -> dict:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}"
    assert http.post(f"{url}/progress", json={"status": "running"}).status_code == 200
    assert http.patch(url, json={"status": status, "result": {"n": 1}}).status_code == 200
    return run


# -- body limits -------------------------------------------------------------------------------


def test_params_nested_250_deep_are_refused_and_listing_runs_keeps_working(http: httpx.Client) -> None:
    pipeline = _pipeline(http)
    deep = http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={"params": _nested(250)})
    assert deep.status_code == 422, deep.text
    assert deep.json()["limit"] == "max_json_depth" and "64" in deep.json()["detail"]
    # Before the fix the run was stored, and from then on every listing answered 500.
    assert http.get("/api/v1/runs/").status_code == 200
    # At the limit it is still accepted (the body's own object is one level).
    assert http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={"params": _nested(62)}).is_success


def test_limits_are_configurable_and_named_in_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYDRIVE_SERVICE_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("RAYDRIVE_SERVICE_MAX_LOG_ENTRIES", "5")
    options = {"max_json_depth": 8}
    with (
        ServiceServer(db=tmp_path / "s.db", app_options=options).start() as svc,
        httpx.Client(base_url=svc.url) as http,
    ):
        run = _run(http)
        big = http.post(f"/api/v1/runs/{run['id']}/logs/", json={"entries": [{"message": "x" * 5000}]})
        assert big.status_code == 413 and big.json()["limit"] == "max_body_bytes"
        assert big.json()["max"] == 4096 and "4096" in big.json()["detail"]

        # No Content-Length (chunked): counted while it arrives.
        def chunks() -> Iterator[bytes]:
            yield b'{"entries": [{"message": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}]}'

        chunked = http.post(
            f"/api/v1/runs/{run['id']}/logs/", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413, chunked.text

        many = http.post(f"/api/v1/runs/{run['id']}/logs/", json={"entries": [{"message": "m"}] * 6})
        assert many.status_code == 422 and many.json()["limit"] == "max_log_entries"
        assert http.post(
            f"/api/v1/runs/{run['id']}/logs/", json={"entries": [{"message": "m"}] * 5}
        ).is_success

        deep = http.post(f"/api/v1/runs/{run['id']}/progress", json={"error": "e", "x": _nested(9)})
        assert deep.status_code == 422 and deep.json()["max"] == 8
        # Brackets inside strings are text, not nesting.
        text = http.post(f"/api/v1/runs/{run['id']}/logs/", json={"entries": [{"message": "[[[[[[[[[[[["}]})
        assert text.is_success, text.text


def test_the_default_log_batch_limit_is_10000(http: httpx.Client) -> None:
    run = _run(http)
    too_many = http.post(f"/api/v1/runs/{run['id']}/logs/", json={"entries": [{"message": "m"}] * 10_001})
    assert too_many.status_code == 422 and too_many.json()["limit"] == "max_log_entries"


# -- numbers and times out of range ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["skip=1e20", "skip=100000000000000000000", "skip=-1", "limit=-1", "limit=100000000000000000000"],
)
@pytest.mark.parametrize("path", ["/api/v1/runs/", "/api/v1/pipelines/"])
def test_out_of_range_paging_answers_422(http: httpx.Client, path: str, query: str) -> None:
    response = http.get(f"{path}?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("value", ["1e20", "100000000000000000000", "garbage", "-1"])
def test_out_of_range_last_event_id_answers_422(http: httpx.Client, value: str) -> None:
    run = _run(http)
    response = http.get(f"/api/v1/runs/{run['id']}/progress/stream", headers={"Last-Event-ID": value})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "not-a-time"])
def test_log_since_that_overflows_answers_422(http: httpx.Client, since: str) -> None:
    run = _run(http)
    response = http.get(f"/api/v1/runs/{run['id']}/logs/", params={"since": since})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "since"]


@pytest.mark.parametrize(
    ("tail", "body"),
    [
        ("/progress", {"current_action_index": 10**20}),
        ("/checkpoints/", {"action_name": "download", "action_index": 10**20}),
    ],
)
def test_out_of_range_indexes_in_bodies_answer_422(http: httpx.Client, tail: str, body: dict) -> None:
    run = _run(http)
    response = http.post(f"/api/v1/runs/{run['id']}{tail}", json=body)
    assert response.status_code == 422, response.text


# -- the stream's edges ------------------------------------------------------------------------


def test_last_event_id_past_the_end_of_a_finished_run_ends_the_stream_at_once(http: httpx.Client) -> None:
    run = _finished(http)
    with http.stream(
        "GET", f"/api/v1/runs/{run['id']}/progress/stream", headers={"Last-Event-ID": "999999"}, timeout=5
    ) as response:
        assert response.status_code == 200
        assert response.read() == b""


def test_a_last_event_id_a_running_run_never_reached_gets_the_current_state(service: ServiceServer) -> None:
    with PipelineServiceClient(service.url) as client:
        run = client.create_run(client.create_pipeline("p", [{"name": "a"}]).id)
        client.report_progress(run.id, status="running")
        events = client.stream_events(run.id, last_event_id=10**6, timeout=20)
        first = next(events)
        assert (first.event, first.id, first.progress.status.value) == ("reset", 2, "running")
        client.update_run(run.id, status="completed")
        # Before, the stream waited for an event above 10**6 and missed the end.
        assert [(e.event, e.id) for e in events] == [("completed", 3)]


def test_a_replay_of_pruned_events_sends_the_current_state_as_a_reset(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", event_retention=1)
    try:
        with ServiceServer(store=store).start() as svc, PipelineServiceClient(svc.url) as client:
            pipeline = client.create_pipeline("p", [{"name": "a"}])
            run = client.create_run(pipeline.id)
            for i in range(70):  # pruning runs every 64 events: 1..63 are gone afterwards
                client.report_progress(
                    run.id, action_progress={"name": "a", "status": "running", "progress": i / 100}
                )
            client.update_run(run.id, status="completed")
            with (
                httpx.Client(base_url=svc.url) as http,
                http.stream(
                    "GET",
                    f"/api/v1/runs/{run.id}/progress/stream",
                    headers={"Last-Event-ID": "3"},
                    timeout=10,
                ) as response,
            ):
                text = response.read().decode()
            blocks = [block for block in text.split("\n\n") if block.strip()]
            assert len(blocks) == 1 and "event: reset" in blocks[0], text
            assert '"status":"completed"' in blocks[0] and "id: 72" in blocks[0]
            # The Python client takes a reset to a finished state as the stream's end.
            events = list(client.stream_events(run.id, last_event_id=3, timeout=10))
            assert [(e.event, e.progress.status.value) for e in events] == [("reset", "completed")]
    finally:
        store.close()


# -- finished runs are immutable ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "tail", "body"),
    [
        ("PATCH", "", {"result": {"n": 2}}),
        ("PATCH", "", {"error": "later"}),
        ("PATCH", "", {"status": "failed"}),
        ("POST", "/checkpoints/", {"action_name": "download", "action_index": 0}),
        ("POST", "/logs/", {"entries": [{"message": "late"}]}),
    ],
)
def test_a_finished_run_refuses_changes_with_409(
    http: httpx.Client, method: str, tail: str, body: dict
) -> None:
    run = _finished(http)
    url = f"/api/v1/runs/{run['id']}"
    before = http.get(url).json()
    answer = http.request(method, f"{url}{tail}", json=body)
    assert answer.status_code == 409, answer.text
    assert "completed" in answer.json()["detail"]
    assert http.get(url).json() == before
    assert http.get(f"{url}/checkpoints/").json() == [] and http.get(f"{url}/logs/").json() == []


def test_repeating_the_final_patch_of_a_finished_run_is_not_a_change(http: httpx.Client) -> None:
    run = _finished(http)
    again = http.patch(f"/api/v1/runs/{run['id']}", json={"status": "completed", "result": {"n": 1}})
    assert again.status_code == 200, again.text


def test_a_started_run_never_goes_back_to_pending(http: httpx.Client) -> None:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}"
    assert http.post(f"{url}/progress", json={"status": "running"}).status_code == 200
    assert http.patch(url, json={"status": "pending"}).status_code == 409
    assert http.post(f"{url}/progress", json={"status": "pending"}).status_code == 409
    assert http.get(url).json()["status"] == "running"


def test_progress_for_an_action_the_run_does_not_have_answers_422(http: httpx.Client) -> None:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}"
    answer = http.post(f"{url}/progress", json={"action_progress": {"name": "nope", "status": "running"}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "action_progress", "name"]
    assert [p["name"] for p in http.get(url).json()["progress"]] == ["download", "train"]


def test_a_progress_report_answers_the_run_or_with_prefer_minimal_a_small_ack(http: httpx.Client) -> None:
    # The contract answers the run; RFC 7240's Prefer: return=minimal asks for the small answer.
    run = _run(http, params={"blob": "x" * 2_000_000})
    url = f"/api/v1/runs/{run['id']}/progress"
    full = http.post(url, json={"status": "running"})
    assert full.status_code == 200 and full.json()["params"] == {"blob": "x" * 2_000_000}
    assert full.json()["progress"][0]["name"] == "download" and "preference-applied" not in full.headers
    for prefer in ("return=minimal", 'respond-async, RETURN="minimal"; x=1'):
        small = http.post(url, json={"current_action": "download"}, headers={"Prefer": prefer})
        assert small.status_code == 200 and len(small.content) < 1000, prefer
        assert small.headers["preference-applied"] == "return=minimal"
        assert small.json()["id"] == run["id"] and small.json()["status"] == "running"


def test_an_action_index_outside_the_runs_actions_answers_422_naming_the_range(http: httpx.Client) -> None:
    run = _run(http)  # two actions
    url = f"/api/v1/runs/{run['id']}"
    answer = http.post(f"{url}/progress", json={"current_action_index": 99})
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "current_action_index"] and "0 to 1" in error["msg"]
    assert http.post(f"{url}/progress", json={"current_action_index": 1}).status_code == 200
    assert http.get(url).json()["current_action_index"] == 1


# -- cancel from anywhere ----------------------------------------------------------------------


def test_cancel_marks_the_run_cancelled_is_idempotent_and_refused_for_ended_runs(http: httpx.Client) -> None:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}"
    assert http.get(f"{url}/status").json() == {
        "id": run["id"],
        "status": "pending",
        "cancel_requested": False,
    }
    http.post(f"{url}/progress", json={"status": "running"})
    first = http.post(f"{url}/cancel")
    assert first.status_code == 200
    assert first.json() == {"id": run["id"], "status": "cancelled", "cancel_requested": True}
    assert http.post(f"{url}/cancel/").json() == first.json()
    assert http.get(f"{url}/status").json() == first.json()
    stored = http.get(url).json()
    assert stored["status"] == "cancelled" and stored["completed_at"] is not None

    for status in ("completed", "failed"):
        ended = _finished(http, status)
        refused = http.post(f"/api/v1/runs/{ended['id']}/cancel")
        assert refused.status_code == 409 and status in refused.json()["detail"]
    assert http.post("/api/v1/runs/nope/cancel").status_code == 404
    assert http.get("/api/v1/runs/nope/status").status_code == 404


def test_cancel_and_status_through_both_clients(service: ServiceServer) -> None:
    with PipelineServiceClient(service.url) as client:
        run = client.create_run(client.create_pipeline("p", [{"name": "a"}]).id)
        assert client.get_run_status(run.id).cancel_requested is False
        assert client.cancel_run(run.id).status.value == "cancelled"
        assert client.cancel_run(run.id).cancel_requested is True
        done = client.create_run(client.create_pipeline("p", [{"name": "a"}]).id)
        client.update_run(done.id, status="completed")
        with pytest.raises(ServiceError) as refused:
            client.cancel_run(done.id)
        assert refused.value.status_code == 409

    async def go() -> None:
        async with AsyncPipelineServiceClient(service.url) as aclient:
            other = await aclient.create_run((await aclient.create_pipeline("p", [{"name": "a"}])).id)
            assert (await aclient.get_run_status(other.id)).status.value == "pending"
            assert (await aclient.cancel_run(other.id)).cancel_requested is True

    asyncio.run(go())


# -- errors never leak -------------------------------------------------------------------------


def test_a_422_does_not_echo_the_input(http: httpx.Client) -> None:
    pipeline = _pipeline(http)
    answer = http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={"params": ["hunter2-secret-value"]})
    assert answer.status_code == 422
    assert "hunter2" not in answer.text and answer.json()["detail"][0]["loc"] == ["body", "params"]


class _BrokenStore:
    """A real store whose run listing fails the way a bug would (the error text carries a secret)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def list_runs(self, *args: Any) -> Any:
        raise RuntimeError("cannot read postgres://admin:hunter2@db.internal/runs (line 42 of store.py)")


def test_an_unexpected_error_answers_a_generic_json_500_and_is_logged_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path / "s.db")
    try:
        with ServiceServer(store=_BrokenStore(store)).start() as svc, httpx.Client(base_url=svc.url) as http:
            with caplog.at_level(logging.ERROR, logger="raydrive.service"):
                answer = http.get("/api/v1/runs/")
            assert answer.status_code == 500
            assert answer.json() == {"detail": "internal error of the pipeline service"}
            logged = "\n".join(record.getMessage() for record in caplog.records)
            assert "db.internal" in logged and "hunter2" not in logged
            assert http.get("/api/v1/nothing-here").json() == {"detail": "Not Found"}
    finally:
        store.close()


# -- secrets are stored redacted ---------------------------------------------------------------

SECRET = "hunter2-very-secret"


def test_secret_values_are_never_stored_or_streamed(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with start_service(db=db) as svc, PipelineServiceClient(svc.url) as client:
        pipeline = client.create_pipeline("p", [{"name": "a"}])
        run = client.create_run(
            pipeline.id, {"api_key": SECRET, "dsn": f"postgres://u:{SECRET}@h/db", "rows": 3}
        )
        assert run.params["api_key"] == "***" and run.params["rows"] == 3
        assert SECRET not in run.params["dsn"]
        client.report_progress(
            run.id,
            status="running",
            action_progress={"name": "a", "status": "running", "message": f"password={SECRET}"},
        )
        checkpoint = client.create_checkpoint(
            run.id, "a", 0, params_snapshot={"token": SECRET}, result={"secret": SECRET, "ok": 1}
        )
        assert checkpoint.params_snapshot == {"token": "***"} and checkpoint.result["ok"] == 1
        logs = client.append_logs(run.id, [{"message": f"Authorization: Bearer {SECRET}"}])
        assert SECRET not in logs[0].message
        client.update_run(
            run.id, status="failed", error=f"boom: password={SECRET}", result={"password": SECRET}
        )
        stored = client.get_run(run.id).model_dump_json() + client.get_progress(run.id).model_dump_json()
        streamed = [event.progress.model_dump_json() for event in client.stream_events(run.id, timeout=10)]
        everything = (
            stored + "".join(streamed) + "".join(c.model_dump_json() for c in client.list_checkpoints(run.id))
        )
        everything += "".join(entry.message for entry in client.list_logs(run.id))
        assert SECRET not in everything and "***" in everything
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("s.db"))
    assert SECRET.encode() not in raw
    assert (db.stat().st_mode & 0o777) == 0o600


# -- reads release what they hold --------------------------------------------------------------


def test_a_failed_listing_does_not_pin_an_old_snapshot(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with start_service(db=db) as svc, httpx.Client(base_url=svc.url) as http:
        run = _run(http)
        # A row an older service stored, which no reader can load back (250 deep).
        with sqlite3.connect(db) as conn:
            doc = conn.execute("SELECT doc FROM runs WHERE id = ?", (run["id"],)).fetchone()[0]
            conn.execute(
                "UPDATE runs SET doc = ? WHERE id = ?",
                (doc.replace('"params":{}', '"params":' + '{"x":' * 250 + "1" + "}" * 250), run["id"]),
            )
        for _ in range(20):  # every worker thread of the pool gets a failed listing
            assert http.get("/api/v1/runs/").status_code == 500
        for _ in range(20):
            # Created after the failures: a reader pinned to an old snapshot answered 404.
            pipeline = _pipeline(http)
            assert http.get(f"/api/v1/pipelines/{pipeline['id']}").status_code == 200
