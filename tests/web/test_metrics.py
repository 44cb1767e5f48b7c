"""GET /metrics: Prometheus text that prometheus-client's parser reads, and counters that move."""

from __future__ import annotations

import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from raydrive.service.server import ServiceServer
from tests.conditions import wait_for

TOKEN = "metrics-token"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceServer(db=tmp_path_factory.mktemp("metricsvc") / "runs.db", token=TOKEN) as server:
        yield server


def _samples(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def test_metrics_need_the_token(service):
    assert httpx.get(service.url + "/metrics").status_code == 401


def test_metrics_parse_and_move_after_reports(service):
    client = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"})
    before = _samples(client)
    made = client.post("/api/v1/pipelines/", json={"name": "m", "actions": [{"name": "a"}]}).json()
    run = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()
    for i in range(3):
        report = {
            "status": "running",
            "action_progress": {"name": "a", "status": "running", "progress": i / 4},
        }
        assert client.post(f"/api/v1/runs/{run['id']}/progress", json=report).status_code == 200
    client.post(f"/api/v1/runs/{run['id']}/logs/", json={"entries": [{"message": "x"}]})
    client.post(f"/api/v1/runs/{run['id']}/checkpoints/", json={"action_name": "a", "action_index": 0})
    client.patch(f"/api/v1/runs/{run['id']}", json={"status": "completed"})
    after = _samples(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("raydrive_reports_received_total", kind="progress") == 3
    assert delta("raydrive_reports_received_total", kind="logs") == 1
    assert delta("raydrive_reports_received_total", kind="checkpoint") == 1
    assert delta("raydrive_reports_received_total", kind="update") == 1
    assert delta("raydrive_report_duration_seconds_count", kind="progress") == 3
    assert delta("raydrive_db_write_duration_seconds_count", operation="report_progress") == 3
    assert delta("raydrive_db_write_duration_seconds_count", operation="create_run") == 1
    assert after[("raydrive_runs", (("status", "completed"),))] >= 1
    route = (("method", "POST"), ("route", "/api/v1/runs/{run_id}/progress"), ("status", "200"))
    assert delta("raydrive_http_request_duration_seconds_count", **dict(route)) == 3
    # The route template is the label, never the id: the label set stays small.
    assert not any(run["id"] in str(key) for key in after)
    # Refused reports are not counted as received.
    client.post(f"/api/v1/runs/{run['id']}/progress", json={"status": "running"})
    assert (
        _samples(client)[("raydrive_reports_received_total", (("kind", "progress"),))]
        == after[("raydrive_reports_received_total", (("kind", "progress"),))]
    )


def test_open_streams_gauge_follows_sse_clients(service):
    client = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"})
    made = client.post("/api/v1/pipelines/", json={"name": "s", "actions": [{"name": "a"}]}).json()
    run = client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={}).json()
    gauge = ("raydrive_sse_streams_open", ())
    base = _samples(client)[gauge]
    opened = threading.Event()

    def listen() -> None:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        path = f"{service.url}/api/v1/runs/{run['id']}/progress/stream"
        with httpx.stream("GET", path, headers=auth, timeout=30) as stream:
            for line in stream.iter_lines():
                opened.set()
                if line.startswith("event: completed"):
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert opened.wait(10)
    wait_for(lambda: _samples(client)[gauge] == base + 1, 10.0, "the stream to be counted")
    client.patch(f"/api/v1/runs/{run['id']}", json={"status": "completed"})
    thread.join(10)
    wait_for(lambda: _samples(client)[gauge] == base, 10.0, "the stream to be uncounted")


def test_runs_by_status_without_a_counting_store(tmp_path):
    from raydrive.service.db.sqlite import SQLiteStore
    from raydrive.service.metrics import _count_runs
    from raydrive.service.models import ActionSpec, PipelineCreate, RunCreate, RunUpdate

    class ListingOnly:  # a store that can only list (another backend without the count query)
        def __init__(self, store):
            self.list_runs = store.list_runs

    store = SQLiteStore(tmp_path / "runs.db")
    try:
        made = store.create_pipeline(PipelineCreate(name="p", actions=[ActionSpec(name="a")]))
        runs = [store.create_run(made.id, RunCreate()) for _ in range(1003)]
        store.update_run(runs[0].id, RunUpdate(status="failed"))
        counted = _count_runs(ListingOnly(store))
        assert counted == store.count_runs_by_status() | {"running": 0, "completed": 0, "cancelled": 0}
        assert counted["pending"] == 1002 and counted["failed"] == 1
    finally:
        store.close()


def test_invented_methods_and_paths_add_no_label_values(service):
    # Issue 24 #3: 300 requests with invented methods (each a 401, no token needed) added 300
    # label values (65 KB -> 622 KB of /metrics).
    client = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {TOKEN}"})
    for i in range(3):
        client.request(f"WARM{i}", f"/nowhere/{i}")
        httpx.request(f"WARM{i}", f"{service.url}/api/v1/runs/{i}")
    before = _samples(client)
    for i in range(300):
        httpx.request(f"INVENTED{i}", f"{service.url}/api/v1/runs/x{i}")
        client.request(f"MADEUP{i}", f"/nowhere/x{i}")
        client.get(f"/api/v1/runs/no-such-{i}")
    after = _samples(client)
    methods = {dict(labels).get("method") for name, labels in after if "method" in dict(labels)}
    routes = {dict(labels).get("route") for name, labels in after if "route" in dict(labels)}
    assert "_OTHER" in methods and not any(m.startswith(("INVENTED", "MADEUP")) for m in methods)
    assert not any("x1" in r or "no-such" in r for r in routes)
    assert len(after) - len(before) < 40  # a few new (route, status) buckets at most, never 300
