"""Several service processes on one database (SQLite and PostgreSQL): real `raydrive service` processes."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive.service.db import open_store
from raydrive.service.models import ActionSpec, PipelineCreate, RunCreate, RunUpdate
from tests.conditions import wait_for as _wait
from tests.pg import pg_server, pg_url  # noqa: F401

_CLI = "import sys; from raydrive.cli import main; sys.argv[0] = 'raydrive'; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """One `raydrive service` process on a free loopback port."""

    def __init__(self, db: str, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "RAYDRIVE_SERVICE_TOKEN"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CLI, "service", "--port", str(self.port), "--db", db, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _wait(self._healthy, 60, f"the service on {self.url}")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the service exited: {self.proc.communicate()[0]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def two_services(db_url: str) -> Iterator[tuple[Service, Service]]:
    first = Service(db_url)
    try:
        second = Service(db_url)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def _run(url: str) -> str:
    with httpx.Client(base_url=url, timeout=10) as http:
        pipeline = http.post("/api/v1/pipelines/", json={"name": "p", "actions": [{"name": "a"}]}).json()
        return http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]


def _subscribe(url: str, run_id: str, events: queue.Queue, headers: dict[str, str] | None = None) -> None:
    """Put every ``(id, event)`` of the run's stream on ``events``; ``None`` when it ends."""
    try:
        with httpx.stream(
            "GET", f"{url}/api/v1/runs/{run_id}/progress/stream", headers=headers or {}, timeout=30
        ) as stream:
            event_id = None
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("event: "):
                    events.put((event_id, line[7:]))
    finally:
        events.put(None)


def _next(events: queue.Queue, timeout: float = 15.0) -> Any:
    return events.get(timeout=timeout)


def test_a_report_to_one_process_reaches_subscribers_of_both(two_services: tuple[Service, Service]) -> None:
    # Before: the second process's subscriber saw the change only at its next ping, 15 s later.
    a, b = two_services
    run_id = _run(a.url)
    on_a, on_b = queue.Queue(), queue.Queue()
    for url, events in ((a.url, on_a), (b.url, on_b)):
        threading.Thread(target=_subscribe, args=(url, run_id, events), daemon=True).start()
    assert _next(on_a) == (1, "progress") and _next(on_b) == (1, "progress")
    for i, target in enumerate((a, b, a)):
        report = {
            "current_action": "a",
            "action_progress": {"name": "a", "status": "running", "progress": i / 4},
        }
        assert httpx.post(f"{target.url}/api/v1/runs/{run_id}/progress", json=report).status_code == 200
        # Each report reaches both subscribers long before a ping (15 s) could have woken them.
        assert _next(on_a, 5) == (i + 2, "progress")
        assert _next(on_b, 5) == (i + 2, "progress")
    assert httpx.patch(f"{b.url}/api/v1/runs/{run_id}", json={"status": "completed"}).status_code == 200
    assert _next(on_a, 5) == (5, "completed") and _next(on_b, 5) == (5, "completed")


def test_last_event_id_replays_on_another_process(two_services: tuple[Service, Service]) -> None:
    a, b = two_services
    run_id = _run(a.url)
    for i in range(3):
        httpx.post(f"{a.url}/api/v1/runs/{run_id}/progress", json={"current_action": f"step {i}"})
    httpx.patch(f"{a.url}/api/v1/runs/{run_id}", json={"status": "cancelled"})
    events: queue.Queue = queue.Queue()
    _subscribe(b.url, run_id, events, {"Last-Event-ID": "2"})
    assert [events.get_nowait() for _ in range(3)] == [(3, "progress"), (4, "progress"), (5, "cancelled")]
    assert events.get_nowait() is None


def test_kill_9_of_one_process_loses_no_acknowledged_write(two_services: tuple[Service, Service]) -> None:
    a, b = two_services
    run_id = _run(a.url)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(timeout=5) as http:
            i = 0
            while not stop.is_set():
                message = f"w{n}-{i}"
                i += 1
                target = (a, b)[i % 2]
                try:
                    response = http.post(
                        f"{target.url}/api/v1/runs/{run_id}/logs/", json={"entries": [{"message": message}]}
                    )
                except httpx.TransportError:
                    continue  # not acknowledged: the process is gone
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(message)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    try:
        _wait(lambda: len(acknowledged) >= 100, what="100 acknowledged writes")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        with lock:
            at_kill = len(acknowledged)
        _wait(lambda: len(acknowledged) >= at_kill + 100, what="writes to the surviving process")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    stored = httpx.get(f"{b.url}/api/v1/runs/{run_id}/logs/", params={"limit": 10_000}).json()
    missing = set(acknowledged) - {entry["message"] for entry in stored}
    assert missing == set()


def test_workers_option_serves_from_several_processes(tmp_path: Path) -> None:
    service = Service(f"sqlite:///{tmp_path / 'w.db'}", "--workers", "2")
    try:
        run_id = _run(service.url)
        streams = [queue.Queue() for _ in range(6)]
        for events in streams:
            threading.Thread(target=_subscribe, args=(service.url, run_id, events), daemon=True).start()
        assert all(_next(events) == (1, "progress") for events in streams)
        httpx.post(f"{service.url}/api/v1/runs/{run_id}/progress", json={"status": "running"})
        httpx.patch(f"{service.url}/api/v1/runs/{run_id}", json={"status": "completed"})
        for events in streams:
            assert _next(events, 5) == (2, "progress")
            assert _next(events, 5) == (3, "completed")
    finally:
        service.stop()


def test_open_streams_beyond_the_cap_get_503_with_retry_after(tmp_path: Path) -> None:
    service = Service(str(tmp_path / "cap.db"), "--max-streams", "2")
    try:
        run_id = _run(service.url)
        streams = [queue.Queue(), queue.Queue()]
        for events in streams:
            threading.Thread(target=_subscribe, args=(service.url, run_id, events), daemon=True).start()
        assert all(_next(events) == (1, "progress") for events in streams)
        refused = httpx.get(f"{service.url}/api/v1/runs/{run_id}/progress/stream", timeout=5)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        # Other requests are still served, and a stream that ends frees its place.
        assert httpx.get(f"{service.url}/api/v1/runs/{run_id}").status_code == 200
        httpx.patch(f"{service.url}/api/v1/runs/{run_id}", json={"status": "completed"})
        for events in streams:
            assert _next(events, 5) == (2, "completed")
        other = _run(service.url)

        def opens() -> bool:
            with httpx.stream(
                "GET", f"{service.url}/api/v1/runs/{other}/progress/stream", timeout=5
            ) as response:
                return response.status_code == 200

        _wait(opens, what="a free stream place")
    finally:
        service.stop()


def test_retain_days_prunes_finished_runs_in_the_background(db_url: str) -> None:
    # Issue 24 #10: --retain-days 0 deleted every finished run at once, one that ended seconds
    # ago too. Now the least is 1 day (0 means keep forever): only what ended over a day ago goes.
    from sqlalchemy import update

    from raydrive.core.pipeline import utcnow
    from raydrive.service.db.base import db_time
    from raydrive.service.db.tables import runs

    store = open_store(db_url)
    pipeline = store.create_pipeline(PipelineCreate(name="p", actions=[ActionSpec(name="a")]))
    old, recent, live = (store.create_run(pipeline.id, RunCreate()).id for _ in range(3))
    store.update_run(old, RunUpdate(status="completed"))
    store.update_run(recent, RunUpdate(status="completed"))
    with store.engine.begin() as conn:
        two_days_ago = db_time(utcnow() - timedelta(days=2))
        conn.execute(update(runs).where(runs.c.id == old).values(completed_at=two_days_ago))
    store.close()
    service = Service(db_url, "--retain-days", "1")
    try:
        _wait(
            lambda: httpx.get(f"{service.url}/api/v1/runs/{old}").status_code == 404,
            what="the run finished two days ago to be pruned",
        )
        assert httpx.get(f"{service.url}/api/v1/runs/{recent}").json()["status"] == "completed"
        assert httpx.get(f"{service.url}/api/v1/runs/{live}").json()["status"] == "pending"
    finally:
        service.stop()
