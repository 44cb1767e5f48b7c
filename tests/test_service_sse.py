"""The progress stream (Server-Sent Events) read off the wire with plain httpx."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive.service.client import PipelineServiceClient
from raydrive.service.server import ServiceServer, start_service
from tests.conditions import wait_for

PING_INTERVAL = 0.3


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)
        db = tmp_path_factory.mktemp("sse") / "sse.db"
        with start_service(db=db, ping_interval=PING_INTERVAL) as svc:
            yield svc


@pytest.fixture
def http(service: ServiceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=httpx.Timeout(5.0)) as client:
        yield client


class SSE:
    """Reads one stream frame by frame: events as dicts, comments as ``{"comment": ...}``."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> dict[str, Any] | None:
        """The next event or comment; None when the server ended the stream."""
        frame: dict[str, Any] = {}
        for line in self._lines:
            if line == "":
                if frame:
                    return frame
                continue
            key, _, value = line.partition(":")
            if key == "":
                return {"comment": value.strip()}
            frame[key] = value[1:] if value.startswith(" ") else value
        return frame or None

    def next_event(self) -> dict[str, Any]:
        while True:
            frame = self.next()
            assert frame is not None, "the stream ended"
            if "comment" not in frame:
                return {
                    "id": int(frame["id"]),
                    "event": frame["event"],
                    "data": json.loads(frame["data"]),
                    "raw": frame["data"],
                }

    def events_until_end(self) -> list[dict[str, Any]]:
        events = []
        while True:
            frame = self.next()
            if frame is None:
                return events
            if "comment" not in frame:
                events.append(
                    {"id": int(frame["id"]), "event": frame["event"], "data": json.loads(frame["data"])}
                )


def _run(http: httpx.Client, actions: tuple[str, ...] = ("a", "b")) -> str:
    pipeline = http.post(
        "/api/v1/pipelines/", json={"name": "p", "actions": [{"name": n} for n in actions]}
    ).json()
    return http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]


def _report(http: httpx.Client, run_id: str, **body: Any) -> None:
    response = http.post(f"/api/v1/runs/{run_id}/progress", json=body)
    assert response.status_code == 200, response.text


def _stream_url(run_id: str) -> str:
    return f"/api/v1/runs/{run_id}/progress/stream"


def test_first_event_is_the_current_state_sent_at_once(http: httpx.Client) -> None:
    run_id = _run(http)
    _report(
        http,
        run_id,
        status="running",
        current_action="a",
        action_progress={"name": "a", "status": "running", "progress": 0.25},
    )
    started = time.monotonic()
    with http.stream("GET", _stream_url(run_id)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        first = SSE(response).next_event()
    assert time.monotonic() - started < PING_INTERVAL  # not held back until a ping or change
    assert (first["id"], first["event"]) == (2, "progress")
    assert first["data"] == http.get(f"/api/v1/runs/{run_id}/progress").json()
    assert "\n" not in first["raw"]


def test_every_change_arrives_in_order_and_the_terminal_event_ends_the_stream(
    http: httpx.Client, service: ServiceServer
) -> None:
    run_id = _run(http)
    steps: list[dict[str, Any]] = [
        {"status": "running", "current_action": "a", "current_action_index": 0},
        *({"action_progress": {"name": "a", "status": "running", "progress": i / 10}} for i in range(1, 10)),
        {"action_progress": {"name": "a", "status": "completed", "progress": 1.0}},
        {
            "current_action": "b",
            "current_action_index": 1,
            "action_progress": {"name": "b", "status": "running", "progress": 0.5},
        },
        {"status": "completed"},
    ]
    with http.stream("GET", _stream_url(run_id)) as response:
        sse = SSE(response)
        assert sse.next_event()["id"] == 1

        def writer() -> None:
            with httpx.Client(base_url=service.url) as other:
                for body in steps:
                    _report(other, run_id, **body)

        thread = threading.Thread(target=writer)
        thread.start()
        events = sse.events_until_end()
        thread.join()
    assert [e["id"] for e in events] == list(range(2, 2 + len(steps)))
    assert [e["event"] for e in events] == ["progress"] * (len(steps) - 1) + ["completed"]
    fractions = [e["data"]["progress"][0]["progress"] for e in events[:11]]
    assert fractions == [0.0, *(i / 10 for i in range(1, 10)), 1.0]
    assert events[-1]["data"]["status"] == "completed"
    assert events[-1]["data"]["completed_at"] is not None


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_failed_and_cancelled_runs_end_with_their_own_event_name(http: httpx.Client, status: str) -> None:
    run_id = _run(http)
    with http.stream("GET", _stream_url(run_id)) as response:
        sse = SSE(response)
        sse.next_event()
        http.patch(f"/api/v1/runs/{run_id}", json={"status": status, "error": "why"})
        events = sse.events_until_end()
    assert [(e["event"], e["data"]["status"], e["data"]["error"]) for e in events] == [
        (status, status, "why")
    ]


def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(http: httpx.Client) -> None:
    run_id = _run(http)
    _report(http, run_id, status="running")
    _report(http, run_id, current_action="a")
    with http.stream("GET", _stream_url(run_id)) as response:
        sse = SSE(response)
        seen = [sse.next_event()]
    assert seen[0]["id"] == 3
    # While disconnected, three changes happen.
    for i in range(3):
        _report(http, run_id, action_progress={"name": "a", "status": "running", "progress": (i + 1) / 4})
    with http.stream("GET", _stream_url(run_id), headers={"Last-Event-ID": str(seen[-1]["id"])}) as response:
        sse = SSE(response)
        replayed = [sse.next_event() for _ in range(3)]
        _report(http, run_id, status="completed")
        live = sse.events_until_end()
    assert [e["id"] for e in replayed] == [4, 5, 6]
    assert [e["data"]["progress"][0]["progress"] for e in replayed] == [0.25, 0.5, 0.75]
    assert [(e["id"], e["event"]) for e in live] == [(7, "completed")]


def test_reconnecting_after_the_terminal_event_gets_an_ended_stream(http: httpx.Client) -> None:
    run_id = _run(http)
    http.patch(f"/api/v1/runs/{run_id}", json={"status": "completed"})
    with http.stream("GET", _stream_url(run_id)) as response:
        events = SSE(response).events_until_end()
    assert [(e["id"], e["event"]) for e in events] == [(2, "completed")]
    with http.stream("GET", _stream_url(run_id), headers={"Last-Event-ID": "2"}) as response:
        assert response.status_code == 200
        assert SSE(response).events_until_end() == []


def test_a_quiet_stream_gets_ping_comments(http: httpx.Client) -> None:
    run_id = _run(http)
    with http.stream("GET", _stream_url(run_id)) as response:
        sse = SSE(response)
        sse.next_event()
        started = time.monotonic()
        frames = [sse.next(), sse.next()]
        elapsed = time.monotonic() - started
    assert frames == [{"comment": "ping"}, {"comment": "ping"}]
    assert PING_INTERVAL * 1.5 < elapsed < PING_INTERVAL * 2 + 1.0


def test_the_server_frees_streams_whose_clients_went_away(service: ServiceServer, http: httpx.Client) -> None:
    run_id = _run(http)
    state = service.app.state
    wait_for(lambda: state.active_streams == 0, 5.0, "the streams to close")
    clients = [httpx.Client(base_url=service.url, timeout=5) for _ in range(3)]
    # Keep each reader: dropping its line iterator would already close the connection.
    readers = []
    for client in clients:
        reader = SSE(client.send(client.build_request("GET", _stream_url(run_id)), stream=True))
        reader.next_event()
        readers.append(reader)
    assert state.active_streams == 3
    for reader, client in zip(readers, clients, strict=True):
        reader.response.close()
        client.close()
    wait_for(lambda: state.active_streams == 0, 5.0, "the streams to close")
    # The run is still there and can still be followed.
    _report(http, run_id, status="running")
    with http.stream("GET", _stream_url(run_id)) as response:
        assert SSE(response).next_event()["data"]["status"] == "running"


def test_stream_errors_unknown_run_and_bad_last_event_id(http: httpx.Client) -> None:
    missing = http.get(_stream_url("nope"))
    assert missing.status_code == 404 and missing.json()["missing"] == "run"
    run_id = _run(http)
    bad = http.get(_stream_url(run_id), headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["header", "last-event-id"]


def test_deleting_a_run_ends_its_streams(http: httpx.Client, service: ServiceServer) -> None:
    run_id = _run(http)
    with http.stream("GET", _stream_url(run_id)) as response:
        sse = SSE(response)
        sse.next_event()
        assert http.delete(f"/api/v1/runs/{run_id}").status_code == 204
        assert sse.events_until_end() == []


def test_event_ids_continue_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    with start_service(db=db) as first, httpx.Client(base_url=first.url) as http:
        run_id = _run(http)
        _report(http, run_id, status="running")
        with http.stream("GET", _stream_url(run_id)) as response:
            before = SSE(response).next_event()
    with start_service(db=db) as second, httpx.Client(base_url=second.url) as http:
        _report(http, run_id, current_action="b")
        with http.stream(
            "GET", _stream_url(run_id), headers={"Last-Event-ID": str(before["id"])}
        ) as response:
            sse = SSE(response)
            after = sse.next_event()
            http.patch(f"/api/v1/runs/{run_id}", json={"status": "completed"})
            rest = sse.events_until_end()
    assert (before["id"], after["id"]) == (2, 3)
    assert after["data"]["current_action"] == "b"
    assert [(e["id"], e["event"]) for e in rest] == [(4, "completed")]


def test_stopping_the_service_ends_open_streams_promptly(tmp_path: Path) -> None:
    service = start_service(db=tmp_path / "stop.db")
    with httpx.Client(base_url=service.url, timeout=5) as http:
        run_id = _run(http)
        with http.stream("GET", _stream_url(run_id)) as response:
            sse = SSE(response)
            sse.next_event()
            started = time.monotonic()
            service.stop()
            assert sse.events_until_end() == []
    assert time.monotonic() - started < 2.0
    assert not service.running


def test_a_burst_of_stream_requests_never_opens_more_than_the_cap(tmp_path) -> None:
    # Issue 24 #7: with --max-streams 5, 60 concurrent requests opened 10-20 streams (a stream
    # was counted once its response started). Places are now taken at admission.
    import asyncio

    with ServiceServer(db=tmp_path / "cap.db", token="", app_options={"max_streams": 5}) as svc:
        with PipelineServiceClient(svc.url) as client:
            pipeline = client.create_pipeline("p", [{"name": "a"}])
            run_id = client.create_run(pipeline.id).id

        async def burst() -> list[int]:
            release, answered = asyncio.Event(), asyncio.Condition()
            opened = 0
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(base_url=svc.url, timeout=30, limits=limits) as http:

                async def one() -> int:
                    nonlocal opened
                    async with http.stream("GET", f"/api/v1/runs/{run_id}/progress/stream") as answer:
                        if answer.status_code == 200:
                            async with answered:
                                opened += 1
                                answered.notify_all()
                            await release.wait()  # hold the stream open until every request answered
                    async with answered:
                        answered.notify_all()
                    return answer.status_code

                tasks = [asyncio.create_task(one()) for _ in range(60)]
                async with answered:  # every request is either refused or holding its stream
                    await answered.wait_for(lambda: opened + sum(t.done() for t in tasks) >= 60)
                release.set()
                return list(await asyncio.gather(*tasks))

        statuses = asyncio.run(burst())
        assert statuses.count(200) == 5 and statuses.count(503) == 55, statuses
        assert svc.app is not None
        wait_for(lambda: svc.app.state.broker.open_streams == 0, 10, "the places to be given back")
