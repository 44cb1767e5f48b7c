"""PipelineServiceClient and AsyncPipelineServiceClient against a real service on loopback
(retry policy: against httpx.MockTransport, which scripts failures a real server cannot)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raydrive.core.errors import (
    ExecutionTimeoutError,
    JobNotFoundError,
    ServiceError,
    ServiceUnavailableError,
)
from raydrive.core.pipeline import ActionProgress, PipelineProgress, RunStatus
from raydrive.service import AsyncPipelineServiceClient, PipelineServiceClient, ProgressEvent
from raydrive.service.db.sqlite import SQLiteStore
from raydrive.service.models import ProgressReport
from raydrive.service.server import ServiceServer, start_service
from tests.services import tokenless_service


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with tokenless_service(tmp_path_factory.mktemp("client"), ping_interval=0.2) as svc:
        yield svc


@pytest.fixture
def client(service: ServiceServer) -> Iterator[PipelineServiceClient]:
    with PipelineServiceClient(service.url) as c:
        yield c


ACTIONS = [
    {"name": "download", "entrypoint": "plugin.Download"},
    {"name": "train", "entrypoint": "plugin.Train"},
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_endpoint_through_the_sync_client(client: PipelineServiceClient) -> None:
    assert client.health() == {"status": "ok"}
    pipeline = client.create_pipeline("demo", ACTIONS, description="d")
    assert [a.name for a in pipeline.actions] == ["download", "train"]
    assert pipeline.id in [p.id for p in client.list_pipelines()]
    assert client.get_pipeline(pipeline.id) == pipeline

    run = client.create_run(pipeline.id, {"epochs": 2}, work_dir=Path("/plugin"))
    assert (run.status, run.params, run.work_dir) == (RunStatus.PENDING, {"epochs": 2}, "/plugin")
    assert run.id in [r.id for r in client.list_runs(status="pending")]
    assert client.get_run(run.id) == run

    running = client.report_progress(
        run.id,
        status=RunStatus.RUNNING,
        current_action="download",
        current_action_index=0,
        action_progress=ActionProgress(name="download", status="running", progress=0.5),
    )
    assert running.status is RunStatus.RUNNING and running.started_at is not None
    client.report_progress(
        run.id, action_progress={"name": "download", "status": "completed", "progress": 1.0}
    )
    progress = client.get_progress(run.id)
    assert isinstance(progress, PipelineProgress)
    assert progress.overall_progress == 0.5 and progress.actions[0].completed_at is not None
    assert run.id in [r.id for r in client.list_runs(RunStatus.RUNNING)]

    assert client.get_latest_checkpoint(run.id) is None
    first = client.create_checkpoint(
        run.id, "download", 0, params_snapshot={"path": "/d"}, result={"files": 3}, artifacts_path="/a"
    )
    assert (first.action_name, first.params_snapshot, first.result) == (
        "download",
        {"path": "/d"},
        {"files": 3},
    )
    assert client.list_checkpoints(run.id) == [first]
    assert client.get_latest_checkpoint(run.id) == first
    assert client.get_checkpoint(run.id, "download") == first
    assert client.get_checkpoint(run.id, "train") is None

    stored = client.append_logs(
        run.id, [{"message": "hello", "action_name": "download"}, {"message": "careful", "level": "warning"}]
    )
    assert [e.message for e in stored] == ["hello", "careful"]
    assert [e.message for e in client.list_logs(run.id, level="warning")] == ["careful"]
    assert [e.message for e in client.list_logs(run.id, action_name="download")] == ["hello"]
    assert client.list_logs(run.id, since=stored[-1].timestamp) == []
    assert len(client.list_logs(run.id, limit=1)) == 1

    done = client.update_run(run.id, status="completed", result={"acc": 0.9})
    assert (done.status, done.result, done.error) == (RunStatus.COMPLETED, {"acc": 0.9}, None)
    cleared = client.update_run(run.id, error=None)
    assert cleared.status is RunStatus.COMPLETED
    assert [p.status for p in client.stream_progress(run.id, timeout=5)] == [RunStatus.COMPLETED]

    client.delete_run(run.id)
    with pytest.raises(JobNotFoundError):
        client.get_run(run.id)
    client.delete_pipeline(pipeline.id)
    with pytest.raises(ServiceError) as gone:
        client.get_pipeline(pipeline.id)
    assert gone.value.status_code == 404


def test_every_endpoint_through_the_async_client(service: ServiceServer) -> None:
    async def scenario() -> None:
        async with AsyncPipelineServiceClient(service.url) as client:
            assert await client.health() == {"status": "ok"}
            pipeline = await client.create_pipeline("async", ACTIONS)
            assert (await client.get_pipeline(pipeline.id)).name == "async"
            assert pipeline.id in [p.id for p in await client.list_pipelines(limit=1000)]
            run = await client.create_run(pipeline.id, {"k": "v"})
            assert (await client.get_run(run.id)).params == {"k": "v"}
            assert run.id in [r.id for r in await client.list_runs(status="pending")]

            events: list[ProgressEvent] = []

            async def follow() -> None:
                async for event in client.stream_events(run.id, timeout=10):
                    events.append(event)

            follower = asyncio.create_task(follow())
            await client.report_progress(run.id, status="running", current_action="download")
            await client.report_progress(run.id, action_progress={"name": "download", "status": "completed"})
            assert (await client.get_progress(run.id)).completed_actions == 1
            checkpoint = await client.create_checkpoint(run.id, "download", 0)
            assert await client.list_checkpoints(run.id) == [checkpoint]
            assert await client.get_latest_checkpoint(run.id) == checkpoint
            assert await client.get_checkpoint(run.id, "train") is None
            logs = await client.append_logs(run.id, [{"message": "m"}])
            assert await client.list_logs(run.id) == logs
            await client.update_run(run.id, status="failed", error="oom")
            await asyncio.wait_for(follower, 10)
            # The stream started at the current state and saw every change after it once.
            ids = [e.id for e in events]
            assert ids == sorted(set(ids)) and ids[-1] == 4
            assert (events[-1].event, events[-1].progress.error) == ("failed", "oom")
            assert [p.status async for p in client.stream_progress(run.id)] == [RunStatus.FAILED]

            await client.delete_run(run.id)
            with pytest.raises(JobNotFoundError):
                await client.get_progress(run.id)
            await client.delete_pipeline(pipeline.id)

    asyncio.run(scenario())


def test_errors_map_to_the_project_types(client: PipelineServiceClient) -> None:
    with pytest.raises(JobNotFoundError) as not_found:
        client.get_run("no-such-run")
    assert isinstance(not_found.value, LookupError)
    assert not_found.value.job_id == "no-such-run"
    with pytest.raises(JobNotFoundError):
        client.get_latest_checkpoint("no-such-run")
    with pytest.raises(JobNotFoundError):
        list(client.stream_events("no-such-run", timeout=5))

    with pytest.raises(ServiceError) as invalid:
        client.create_pipeline("p", [{"name": "a"}, {"name": "a"}])
    assert invalid.value.status_code == 422 and "actions" in str(invalid.value)

    pipeline = client.create_pipeline("p", ACTIONS)
    run = client.create_run(pipeline.id)
    client.update_run(run.id, status="cancelled")
    with pytest.raises(ServiceError) as conflict:
        client.report_progress(run.id, status="running")
    assert conflict.value.status_code == 409 and "cancelled" in conflict.value.detail


def test_an_unreachable_service_says_where_and_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with PipelineServiceClient(url, retries=2, backoff=0.01) as client:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as unavailable:
            client.get_run("r")
    assert time.monotonic() - started < 5
    message = str(unavailable.value)
    assert url in message and "raydrive service" in message
    assert isinstance(unavailable.value, ConnectionError)


def test_the_token_is_sent_but_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "tok-123-secret"
    with start_service(db=tmp_path / "auth.db", token=secret) as svc:
        with PipelineServiceClient(svc.url, token="wrong-token-456") as wrong:
            with pytest.raises(ServiceError) as denied:
                wrong.list_runs()
            assert denied.value.status_code == 401
            assert "wrong-token-456" not in str(denied.value) + repr(wrong)
            assert "RAYDRIVE_SERVICE_TOKEN" in str(denied.value)
        monkeypatch.setenv("RAYDRIVE_SERVICE_TOKEN", secret)
        with PipelineServiceClient(svc.url) as from_env:
            assert from_env.list_runs() == []
            assert secret not in repr(from_env) and "token=<set>" in repr(from_env)
            assert secret not in repr(vars(from_env))


def test_close_and_context_manager(service: ServiceServer) -> None:
    client = PipelineServiceClient(service.url)
    with client:
        client.health()
    with pytest.raises(RuntimeError):
        client.health()


# -- streams ----------------------------------------------------------------------------------


def test_stream_resumes_across_a_service_restart_delivering_each_event_once(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    first = start_service(db=db)
    client = PipelineServiceClient(first.url, backoff=0.05, max_backoff=0.2, reconnect_timeout=15)
    pipeline = client.create_pipeline("p", ACTIONS)
    run_id = client.create_run(pipeline.id).id
    received: list[ProgressEvent] = []
    failures: list[BaseException] = []
    got = threading.Condition()

    def follow() -> None:
        try:
            for event in client.stream_events(run_id, timeout=30):
                with got:
                    received.append(event)
                    got.notify_all()
        except BaseException as exc:
            failures.append(exc)

    def wait_for_id(seq: int) -> None:
        with got:
            assert got.wait_for(lambda: received and received[-1].id == seq, timeout=10)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        wait_for_id(1)
        client.report_progress(run_id, status="running", current_action="download")
        client.report_progress(
            run_id, action_progress={"name": "download", "progress": 0.5, "status": "running"}
        )
        wait_for_id(3)
        first.stop()
        # While no service runs, two changes land in the database (as from another process).
        offline = SQLiteStore(db)
        offline.report_progress(
            run_id,
            ProgressReport(action_progress=ActionProgress(name="download", status="completed", progress=1.0)),
        )
        offline.report_progress(run_id, ProgressReport(current_action="train"))
        offline.close()
        second = ServiceServer(port=first.port, db=db).start()
        try:
            client.report_progress(
                run_id, action_progress={"name": "train", "progress": 1.0, "status": "completed"}
            )
            client.update_run(run_id, status="completed")
            follower.join(20)
        finally:
            second.stop()
    finally:
        first.stop()
        client.close()
    assert failures == []
    assert not follower.is_alive()
    assert [e.id for e in received] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.event for e in received] == ["progress"] * 6 + ["completed"]
    assert received[4].progress.current_action == "train"
    assert received[-1].progress.overall_progress == 1.0


def test_stream_from_a_given_event_id(client: PipelineServiceClient) -> None:
    run_id = client.create_run(client.create_pipeline("p", ACTIONS).id).id
    client.report_progress(run_id, status="running")
    client.report_progress(run_id, current_action="train")
    client.update_run(run_id, status="completed")
    events = list(client.stream_events(run_id, last_event_id=2, timeout=5))
    assert [(e.id, e.event, e.terminal) for e in events] == [(3, "progress", False), (4, "completed", True)]


def test_stream_timeout_holds_although_pings_keep_the_connection_alive(client: PipelineServiceClient) -> None:
    run_id = client.create_run(client.create_pipeline("p", ACTIONS).id).id
    seen: list[ProgressEvent] = []
    started = time.monotonic()
    with pytest.raises(ExecutionTimeoutError) as timed_out:
        for event in client.stream_events(run_id, timeout=1.0):
            seen.append(event)
    assert 0.9 < time.monotonic() - started < 3.0
    assert [e.id for e in seen] == [1] and timed_out.value.job_id == run_id
    assert isinstance(timed_out.value, TimeoutError)


def test_async_stream_timeout_holds_too(service: ServiceServer) -> None:
    async def scenario() -> float:
        async with AsyncPipelineServiceClient(service.url) as client:
            run = await client.create_run((await client.create_pipeline("p", ACTIONS)).id)
            started = time.monotonic()
            with pytest.raises(ExecutionTimeoutError):
                async for _ in client.stream_progress(run.id, timeout=1.0):
                    pass
            return time.monotonic() - started

    assert 0.9 < asyncio.run(scenario()) < 3.0


# -- retry policy, with scripted failures -------------------------------------------------------

RUN_JSON = {"id": "r1", "pipeline_id": "p1", "created_at": "2024-01-01T00:00:00+00:00"}
PIPELINE_JSON = {
    "id": "p1",
    "name": "p",
    "actions": [{"name": "a"}],
    "created_at": "2024-01-01T00:00:00+00:00",
}


class Script:
    """A MockTransport handler answering from a list: a status code (with ``body``) or an
    httpx exception to raise."""

    def __init__(self, *steps: int | type[httpx.TransportError], body: dict | None = None) -> None:
        self.steps = list(steps)
        self.body = body or RUN_JSON
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, int):
            body = self.body if step < 400 else {"detail": f"status {step}"}
            return httpx.Response(step, json=body)
        raise step("scripted failure", request=request)

    def client(self, **options: object) -> PipelineServiceClient:
        return PipelineServiceClient(
            "http://service.test", transport=httpx.MockTransport(self), backoff=0.001, **options
        )


def test_reads_retry_5xx_and_connection_errors_then_succeed() -> None:
    script = Script(503, httpx.ConnectError, 500, 200)
    with script.client() as client:
        assert client.get_run("r1").id == "r1"
    assert len(script.requests) == 4


def test_retries_are_bounded() -> None:
    script = Script(503, 503, 503)
    with script.client(retries=2) as client, pytest.raises(ServiceError) as failed:
        client.get_run("r1")
    assert failed.value.status_code == 503 and len(script.requests) == 3

    script = Script(httpx.ReadError, httpx.ReadError)
    with script.client(retries=1) as client, pytest.raises(ServiceUnavailableError) as down:
        client.list_runs()
    assert "http://service.test" in str(down.value) and len(script.requests) == 2


def test_progress_reports_and_patches_are_retried_as_idempotent() -> None:
    script = Script(502, httpx.ReadError, 200, body={"id": "r1", "status": "running"})
    with script.client() as client:
        assert client.report_progress("r1", status="running").status is RunStatus.RUNNING
    assert [r.method for r in script.requests] == ["POST"] * 3
    assert [json.loads(r.content) for r in script.requests] == [{"status": "running"}] * 3

    script = Script(httpx.ReadTimeout, 200)
    with script.client() as client:
        assert client.update_run("r1", error="x").id == "r1"
    assert [r.method for r in script.requests] == ["PATCH", "PATCH"]


def test_creates_are_retried_with_one_idempotency_key() -> None:
    script = Script(503, httpx.ReadTimeout, httpx.ConnectError, 200, body=PIPELINE_JSON)
    with script.client() as client:
        assert client.create_pipeline("p", [{"name": "a"}]).id == "p1"
    keys = {request.headers["idempotency-key"] for request in script.requests}
    assert len(script.requests) == 4 and len(keys) == 1

    script = Script(200, 200, body=PIPELINE_JSON)
    with script.client() as client:  # two creates: two keys
        client.create_pipeline("p", [{"name": "a"}])
        client.create_pipeline("p", [{"name": "a"}], idempotency_key="mine")
    assert script.requests[0].headers["idempotency-key"] != "mine"
    assert script.requests[1].headers["idempotency-key"] == "mine"

    script = Script(httpx.ReadError, httpx.ReadError, body=PIPELINE_JSON)
    with script.client(retries=1) as client, pytest.raises(ServiceUnavailableError):
        client.create_pipeline("p", [{"name": "a"}])
    assert len(script.requests) == 2


def test_client_errors_are_not_retried_and_the_token_only_travels_in_the_header() -> None:
    script = Script(422)
    with script.client(token="hidden-value") as client:
        with pytest.raises(ServiceError) as invalid:
            client.report_progress("r1", status="running")
        assert "hidden-value" not in repr(client)
    assert invalid.value.status_code == 422 and len(script.requests) == 1
    assert script.requests[0].headers["authorization"] == "Bearer hidden-value"
    assert "hidden-value" not in str(invalid.value)


def test_async_client_retries_the_same_way() -> None:
    script = Script(503, httpx.ConnectError, 200)

    async def scenario() -> str:
        async with AsyncPipelineServiceClient(
            "http://service.test", transport=httpx.MockTransport(script), backoff=0.001
        ) as client:
            return (await client.get_run("r1")).id

    assert asyncio.run(scenario()) == "r1"
    assert len(script.requests) == 3


def test_the_reporter_asks_for_the_small_answer_with_prefer_minimal() -> None:
    # Issue 23: the contract answers a progress report with the run; raydrive's reporter sends
    # Prefer: return=minimal (RFC 7240) and reads the acknowledgement. What goes on the wire is
    # read by a plain socket listener that answers like the service does.
    import json as _json
    import socket as _socket

    listener = _socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            while len(body) < length:
                body += conn.recv(65536)
            seen.append(head)
            answer = _json.dumps({"id": "r1", "status": "running"}).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\npreference-applied: return=minimal\r\n"
                + f"content-length: {len(answer)}\r\nconnection: close\r\n\r\n".encode()
                + answer
            )

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        with PipelineServiceClient(f"http://127.0.0.1:{port}", retries=0) as client:
            ack = client.report_progress("r1", status="running")
        thread.join(10)
        assert ack.id == "r1" and ack.status is RunStatus.RUNNING
        assert b"\r\nprefer: return=minimal" in seen[0].lower()
    finally:
        listener.close()
