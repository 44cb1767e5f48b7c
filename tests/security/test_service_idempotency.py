"""The pipeline service's creates under retries (Stripe's idempotency keys) and its store's file
descriptors (issue 9, issue 14): a real service on loopback, real SQLite, real httpx."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive.service.client import PipelineServiceClient
from raydrive.service.db import open_store
from raydrive.service.idempotency import HEADER
from raydrive.service.models import PipelineCreate, RunCreate
from raydrive.service.server import ServiceServer, start_service
from tests.conditions import wait_for
from tests.pg import pg_server, pg_url  # noqa: F401


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    svc = start_service(db=tmp_path / "service.db")
    with svc, httpx.Client(base_url=svc.url, timeout=30) as client:
        yield client


def _pipeline(http: httpx.Client) -> dict:
    response = http.post("/api/v1/pipelines/", json={"name": "p", "actions": [{"name": "a"}]})
    assert response.status_code == 200, response.text
    return response.json()


def _open_fds(under: Path) -> int:
    """This process's open file descriptors on files under ``under`` (the store's database and
    WAL): other threads of the test process (Ray's, the service's) open and close fds of their
    own meanwhile, so a count of all fds is noise."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        count += target.startswith(str(under))
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_reader_threads_that_end_leave_no_file_descriptors_behind(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    try:
        run = store.create_run(
            store.create_pipeline(PipelineCreate(name="p", actions=[{"name": "a"}])).id, RunCreate()
        )

        def burst() -> None:
            # 200 short-lived threads that each read once, as the server's worker threads do.
            threads = [threading.Thread(target=store.get_run, args=(run.id,)) for _ in range(200)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

        burst()  # the pool fills up to its bound
        before = _open_fds(tmp_path)
        for _ in range(3):
            burst()
        # The old store kept two fds (database and WAL) per retired thread: +18 per burst, without
        # bound. Now what stays open is the pools' connections: at most 8 readers and 1 writer, each
        # with the database, its WAL and its shared memory (a loaded machine may fill the reader pool
        # only in a later burst than the first).
        pooled = 3 * (8 + 1)
        assert _open_fds(tmp_path) <= max(before + 2, pooled)
    finally:
        store.close()


# -- idempotent creates ------------------------------------------------------------------------


def test_a_create_repeated_with_its_idempotency_key_stores_one_row(http: httpx.Client) -> None:
    pipeline = _pipeline(http)
    url = f"/api/v1/pipelines/{pipeline['id']}/runs/"
    answers = [
        http.post(url, json={"params": {"n": 1}}, headers={"Idempotency-Key": "k-1"}) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200] * 3
    assert len({a.json()["id"] for a in answers}) == 1
    assert answers[1].headers["idempotent-replayed"] == "true"
    runs = [r for r in http.get("/api/v1/runs/?limit=1000").json() if r["pipeline_id"] == pipeline["id"]]
    assert len(runs) == 1
    other = http.post(url, json={"params": {"n": 2}}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and "another body" in other.json()["detail"]
    # The key is scoped to the endpoint: the same key on logs is another request.
    logs = f"/api/v1/runs/{runs[0]['id']}/logs"
    for _ in range(2):
        assert http.post(
            logs, json={"entries": [{"message": "m"}]}, headers={"Idempotency-Key": "k-1"}
        ).is_success
        assert http.post(
            f"{logs}/", json={"entries": [{"message": "m"}]}, headers={"Idempotency-Key": "k-1"}
        ).is_success
    assert len(http.get(f"{logs}/").json()) == 1


class _HeldFirstCreate:
    """A real store whose first ``create_run`` waits for ``release`` (until the client has
    retried), then goes on, or with ``fail`` raises (a 500)."""

    def __init__(self, store: Any, *, fail: bool = False) -> None:
        self._store = store
        self._fail = fail
        self.release = threading.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def create_run(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            assert self.release.wait(30), "never released"
            if self._fail:
                raise RuntimeError("the database went away")
        return self._store.create_run(*args)


def test_a_create_retried_after_a_read_timeout_stores_one_run(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    slow = _HeldFirstCreate(store)
    try:
        with ServiceServer(store=slow).start() as svc:
            keys = svc.app.state.idempotency
            with PipelineServiceClient(svc.url, timeout=1.0, retries=5, backoff=0.01) as client:
                pipeline = client.create_pipeline("p", [{"name": "a"}])

                def release_once_retried() -> None:
                    deadline = time.monotonic() + 30
                    while keys.waiting == 0 and time.monotonic() < deadline:
                        time.sleep(0.01)
                    slow.release.set()

                helper = threading.Thread(target=release_once_retried)
                helper.start()
                run = client.create_run(pipeline.id, {"n": 1})
                helper.join()
                assert keys.waiting == 0 and keys.replayed >= 1  # the retry got the first answer
                assert [r.id for r in client.list_runs(limit=1000) if r.pipeline_id == pipeline.id] == [
                    run.id
                ]
                assert slow.calls == 1
    finally:
        slow.release.set()
        store.close()


# -- issue 24 #6: keys in the database, shared by every process and kept across restarts


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "keys.db")
    return request.getfixturevalue("pg_url")


def _runs_of(url: str, pipeline_id: str) -> list[str]:
    runs = httpx.get(f"{url}/api/v1/runs/?limit=1000", timeout=30).json()
    return [r["id"] for r in runs if r["pipeline_id"] == pipeline_id]


def test_one_key_sent_to_two_processes_and_across_a_restart_creates_one_run(db_url: str) -> None:
    # Before: 40 retries with one key against --workers 2 created 2 runs, and the same key
    # before and after a restart created 2 runs. (Two services on one database: each has its
    # own memory, as two worker processes have.)
    with ServiceServer(db=db_url) as a, ServiceServer(db=db_url) as b:
        pipeline = httpx.post(
            f"{a.url}/api/v1/pipelines/", json={"name": "p", "actions": [{"name": "a"}]}
        ).json()
        path = f"/api/v1/pipelines/{pipeline['id']}/runs/"
        answers: list[httpx.Response] = []

        def send(url: str) -> None:
            answers.append(
                httpx.post(url + path, json={"params": {"n": 1}}, headers={HEADER: "k-40"}, timeout=60)
            )

        threads = [threading.Thread(target=send, args=((a.url, b.url)[i % 2],)) for i in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {r.status_code for r in answers} == {200}
        assert len({r.json()["id"] for r in answers}) == 1
        assert _runs_of(a.url, pipeline["id"]) == [answers[0].json()["id"]]
    with ServiceServer(db=db_url) as restarted:
        again = httpx.post(
            restarted.url + path, json={"params": {"n": 1}}, headers={HEADER: "k-40"}, timeout=60
        )
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert _runs_of(restarted.url, pipeline["id"]) == [answers[0].json()["id"]]


def test_repeats_waiting_on_a_failing_first_request_execute_once(db_url: str) -> None:
    # Before: two repeats waiting on a first request that failed with a 5xx both executed.
    store = open_store(db_url)
    failing = _HeldFirstCreate(store, fail=True)
    try:
        with ServiceServer(store=failing) as svc:
            keys = svc.app.state.idempotency
            pipeline = httpx.post(
                f"{svc.url}/api/v1/pipelines/", json={"name": "p", "actions": [{"name": "a"}]}
            )
            url = f"{svc.url}/api/v1/pipelines/{pipeline.json()['id']}/runs/"
            answers: dict[str, httpx.Response] = {}

            def send(name: str) -> None:
                answers[name] = httpx.post(url, json={}, headers={HEADER: "k-fail"}, timeout=60)

            first = threading.Thread(target=send, args=("first",))
            first.start()
            wait_for(lambda: failing.calls == 1, 30, "the first request to run")
            repeats = [threading.Thread(target=send, args=(f"repeat{i}",)) for i in range(2)]
            for thread in repeats:
                thread.start()
            wait_for(lambda: keys.waiting == 2, 30, "both repeats to wait")
            failing.release.set()
            for thread in (first, *repeats):
                thread.join()
            assert answers["first"].status_code == 500
            assert answers["repeat0"].status_code == answers["repeat1"].status_code == 200
            assert answers["repeat0"].json()["id"] == answers["repeat1"].json()["id"]
            assert failing.calls == 2  # the failed first, then exactly one repeat
    finally:
        failing.release.set()
        store.close()
