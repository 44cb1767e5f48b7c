"""``POST /api/v1/runs/{run_id}/reports`` (a batch of reports in one request and one transaction)
and the pipeline actor's reporter that sends it, over loopback with a real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from raydrive.core.pipeline import ActionStatus, RunStatus
from raydrive.drivers.ray_pipeline.reporter import BufferedReporter
from raydrive.service.client import PipelineServiceClient
from raydrive.service.models import MAX_REPORTS
from raydrive.service.server import ServiceServer
from tests.services import tokenless_service

ACTIONS = ("download", "train")


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with tokenless_service(tmp_path_factory.mktemp("reports")) as svc:
        yield svc


@pytest.fixture
def client(service: ServiceServer) -> Iterator[PipelineServiceClient]:
    with PipelineServiceClient(service.url) as c:
        yield c


def _run_id(client: PipelineServiceClient) -> str:
    pipeline = client.create_pipeline(
        "demo", [{"name": name, "entrypoint": f"plugin.{name}.Action"} for name in ACTIONS]
    )
    return client.create_run(pipeline.id, params={"n": 0}).id


def _post(service: ServiceServer, run_id: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{service.url}/api/v1/runs/{run_id}/reports", json=body, headers=headers, timeout=10)


def _events_after(service: ServiceServer, run_id: str, seq: int) -> list[str]:
    """The event names the stream replays after ``seq`` up to the run's end."""
    names = []
    headers = {"Last-Event-ID": str(seq)}
    with httpx.stream("GET", f"{service.url}/api/v1/runs/{run_id}/progress/stream", headers=headers) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
    return names


def _counted(service: ServiceServer, kind: str) -> float:
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    prefix = f'raydrive_reports_received_total{{kind="{kind}"}} '
    values = [float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


def _whole_run(action: str) -> list[dict[str, Any]]:
    return [
        {"progress": {"status": "running", "current_action": action, "current_action_index": 0,
                      "action_progress": {"name": action, "status": "running"}}},
        {"logs": {"entries": [{"message": "step one", "action_name": action}]}},
        {"checkpoint": {"action_name": action, "action_index": 0, "params_snapshot": {"n": 1},
                        "result": {"n": 1}}},
        {"progress": {"action_progress": {"name": action, "status": "completed", "progress": 1.0}}},
        {"update": {"status": "completed", "result": {"n": 1}}},
    ]  # fmt: skip


def test_a_batch_is_applied_in_order_as_one_change(
    service: ServiceServer, client: PipelineServiceClient
) -> None:
    run_id = _run_id(client)
    checkpoints_counted = _counted(service, "checkpoint")
    ack = client.send_reports(run_id, _whole_run("download"))
    assert ack is not None and [r.status for r in ack.results] == [200] * 5
    assert _counted(service, "checkpoint") == checkpoints_counted + 1  # /metrics counts each report
    run = client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.result == {"n": 1}
    assert run.started_at is not None and run.completed_at is not None
    assert run.progress[0].status is ActionStatus.COMPLETED and run.progress[0].started_at is not None
    assert [c.params_snapshot for c in client.list_checkpoints(run_id)] == [{"n": 1}]
    assert [e.message for e in client.list_logs(run_id)] == ["step one"]
    # Event 1 is the run's creation; the whole batch is the one event after it.
    assert _events_after(service, run_id, 1) == ["completed"]


def test_each_report_gets_the_answer_its_own_endpoint_would_give(client: PipelineServiceClient) -> None:
    run_id = _run_id(client)
    ack = client.send_reports(
        run_id,
        [
            {"progress": {"action_progress": {"name": "no-such-action", "status": "running"}}},
            {"checkpoint": {"action_name": "download", "action_index": 0}},
            {"update": {"status": "cancelled"}},
            {"logs": {"entries": [{"message": "too late"}]}},
            {"checkpoint": {"action_name": "train", "action_index": 1}},
            {"progress": {"status": "running"}},
            {"progress": {"action_progress": {"name": "train", "status": "running"}}},
        ],
    )
    assert ack is not None
    assert [r.status for r in ack.results] == [422, 200, 200, 409, 409, 409, 200]
    assert "no-such-action" in str(ack.results[0].detail) and "cancelled" in str(ack.results[3].detail)
    run = client.get_run(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.progress[1].status is ActionStatus.PENDING  # a finished run ignores later progress
    assert [c.action_name for c in client.list_checkpoints(run_id)] == ["download"]
    assert client.list_logs(run_id) == []


def test_secrets_in_a_batch_are_masked_before_they_are_stored(client: PipelineServiceClient) -> None:
    run_id = _run_id(client)
    ack = client.send_reports(
        run_id,
        [
            {"checkpoint": {"action_name": "download", "action_index": 0,
                            "params_snapshot": {"api_token": "tok-123456"},
                            "result": {"password": "pw-123456"}}},
            {"update": {"result": {"db_password": "pw-123456"}}},
        ],
    )  # fmt: skip
    assert ack is not None and [r.status for r in ack.results] == [200, 200]
    checkpoint = client.list_checkpoints(run_id)[0]
    assert checkpoint.params_snapshot == {"api_token": "***"} and checkpoint.result == {"password": "***"}
    assert client.get_run(run_id).result == {"db_password": "***"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"reports": "all of them"}, 422),
        ({"reports": [{}]}, 422),
        ({"reports": [{"progress": {}, "update": {}}]}, 422),
        ({"reports": [{"checkpoint": {"action_name": "a", "action_index": -1}}]}, 422),
        ({"reports": [{"progress": {"current_action_index": 2**64}}]}, 422),
        ({"reports": [{"logs": {"entries": [{"message": 7}]}}]}, 422),
        ({"reports": [{"progress": {}}] * (MAX_REPORTS + 1)}, 422),
        ([1, 2, 3], 422),
    ],
)
def test_bad_batches_answer_4xx_and_change_nothing(
    service: ServiceServer, client: PipelineServiceClient, body: Any, status: int
) -> None:
    run_id = _run_id(client)
    before = client.get_run(run_id)
    response = _post(service, run_id, body)
    assert response.status_code == status, response.text
    assert "detail" in response.json()
    assert client.get_run(run_id) == before


def test_a_batch_for_an_unknown_run_is_a_404_naming_the_run(service: ServiceServer) -> None:
    response = _post(service, "no-such-run", {"reports": [{"progress": {"status": "running"}}]})
    assert response.status_code == 404 and response.json()["missing"] == "run"


def test_a_log_report_over_the_limit_is_refused_alone(tmp_path) -> None:
    server = ServiceServer(db=tmp_path / "s.db", app_options={"max_log_entries": 2})
    with server as service, PipelineServiceClient(service.url) as client:
        run_id = _run_id(client)
        many = {"logs": {"entries": [{"message": f"line {i}"} for i in range(3)]}}
        ack = client.send_reports(run_id, [many, {"logs": {"entries": [{"message": "kept"}]}}])
        assert ack is not None and [r.status for r in ack.results] == [422, 200]
        assert "limit is 2" in str(ack.results[0].detail)
        assert [e.message for e in client.list_logs(run_id)] == ["kept"]


def test_a_retried_batch_with_its_key_is_applied_once(
    service: ServiceServer, client: PipelineServiceClient
) -> None:
    run_id = _run_id(client)
    body = {"reports": [{"checkpoint": {"action_name": "download", "action_index": 0}}]}
    key = uuid.uuid4().hex
    first = _post(service, run_id, body, **{"Idempotency-Key": key})
    again = _post(service, run_id, body, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    assert len(client.list_checkpoints(run_id)) == 1


def test_the_reporter_sends_what_is_queued_as_batches(client: PipelineServiceClient) -> None:
    run_id = _run_id(client)
    reporter = BufferedReporter(client, run_id)
    for report in _whole_run("download"):
        ((field, body),) = report.items()
        method = {"progress": "report_progress", "checkpoint": "create_checkpoint", "logs": "append_logs",
                  "update": "update_run"}[field]  # fmt: skip
        reporter.send(method, **body)
    reporter.close(timeout=30)
    assert reporter.delivered == 5 and reporter.dropped == 0
    assert 1 <= reporter.batches <= 4  # the first report may leave alone, before the rest is queued
    run = client.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and len(client.list_checkpoints(run_id)) == 1


def test_the_reporter_falls_back_to_single_requests_on_an_older_service(tmp_path) -> None:
    with ServiceServer(db=tmp_path / "s.db") as service, PipelineServiceClient(service.url) as client:
        assert service.app is not None
        # A service from before the batch endpoint: the same server without that route.
        routes = service.app.router.routes
        routes[:] = [r for r in routes if not getattr(r, "path", "").rstrip("/").endswith("/reports")]
        run_id = _run_id(client)
        assert client.send_reports(run_id, [{"progress": {"status": "running"}}]) is None
        reporter = BufferedReporter(client, run_id)
        reporter.flush(30)  # nothing queued: the thread is idle, so the next sends queue up together
        for i in range(20):
            reporter.log(f"line {i}", "info", "download")
        reporter.send("create_checkpoint", action_name="download", action_index=0)
        reporter.send("update_run", status="completed")
        reporter.close(timeout=30)
        assert reporter.batches == 0 and reporter.dropped == 0
        assert [e.message for e in client.list_logs(run_id)] == [f"line {i}" for i in range(20)]
        assert client.get_run(run_id).status is RunStatus.COMPLETED
        assert len(client.list_checkpoints(run_id)) == 1
