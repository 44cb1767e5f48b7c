"""What the page reads (``/ui/api``): redacted, paged, replayable, and 4xx on bad input."""

from __future__ import annotations

import httpx
import pytest

from raydrive.service.server import ServiceServer

SECRET = "hunter2-very-secret"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceServer(db=tmp_path_factory.mktemp("uisvc") / "runs.db", token="") as server:
        yield server


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        yield c


def _run(client: httpx.Client, **params) -> str:
    made = client.post("/api/v1/pipelines/", json={"name": "ui", "actions": [{"name": "a"}]}).json()
    return client.post(f"/api/v1/pipelines/{made['id']}/runs/", json={"params": params}).json()["id"]


def _events(client: httpx.Client, path: str, headers: dict | None = None) -> list[tuple[str, str]]:
    seen, current = [], None
    with client.stream("GET", path, headers=headers or {}) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("id: "):
                current = line[4:]
            elif line.startswith("data: "):
                seen.append((current, line[6:]))
    return seen


def test_secrets_never_reach_the_page(client):
    run_id = _run(client, db_password=SECRET, url=f"postgres://u:{SECRET}@db/x")
    step = {"name": "a", "status": "running", "message": f"token={SECRET}", "error": f"Bearer {SECRET}"}
    client.post(f"/api/v1/runs/{run_id}/progress", json={"status": "running", "action_progress": step})
    client.post(f"/api/v1/runs/{run_id}/logs/", json={"entries": [{"message": f"password={SECRET}"}]})
    client.post(
        f"/api/v1/runs/{run_id}/checkpoints/",
        json={"action_name": "a", "action_index": 0, "params_snapshot": {"api_key": SECRET}},
    )
    client.patch(f"/api/v1/runs/{run_id}", json={"status": "failed", "error": f"failed: token={SECRET}"})
    bodies = [
        client.get(f"/ui/api/runs/{run_id}").text,
        client.get(f"/ui/api/runs/{run_id}/logs").text,
        client.get("/ui/api/runs").text,
        "".join(data for _, data in _events(client, f"/ui/api/runs/{run_id}/stream")),
    ]
    for body in bodies:
        assert SECRET not in body
    assert "***" in bodies[0] and "***" in bodies[1] and "***" in bodies[3]


def test_page_stream_replays_after_last_event_id(client):
    run_id = _run(client)
    for i in range(1, 4):
        step = {"name": "a", "status": "running", "progress": i / 4}
        client.post(f"/api/v1/runs/{run_id}/progress", json={"status": "running", "action_progress": step})
    client.patch(f"/api/v1/runs/{run_id}", json={"status": "completed"})
    everything = _events(client, f"/api/v1/runs/{run_id}/progress/stream", {"Last-Event-ID": "0"})
    replay = _events(client, f"/ui/api/runs/{run_id}/stream", {"Last-Event-ID": everything[1][0]})
    assert [i for i, _ in replay] == [i for i, _ in everything[2:]]
    assert _events(client, f"/ui/api/runs/{run_id}/stream", {"Last-Event-ID": everything[-1][0]}) == []


def test_logs_of_one_batch_are_all_delivered_across_polls(client):
    run_id = _run(client)
    client.post(f"/api/v1/runs/{run_id}/logs/", json={"entries": [{"message": f"m{i}"} for i in range(5)]})
    first = client.get(f"/ui/api/runs/{run_id}/logs", params={"limit": 2}).json()
    assert [e["message"] for e in first] == ["m0", "m1"]
    rest = client.get(
        f"/ui/api/runs/{run_id}/logs", params={"after": first[-1]["id"], "since": first[-1]["timestamp"]}
    ).json()
    assert [e["message"] for e in rest] == ["m2", "m3", "m4"]  # same timestamp, none lost or repeated


@pytest.mark.parametrize(
    "path",
    [
        "/ui/api/runs?skip=-1",
        "/ui/api/runs?skip=1e20",
        "/ui/api/runs?limit=0",
        "/ui/api/runs?limit=100000",
        "/ui/api/runs?status=bogus",
        "/ui/api/runs?pipeline=" + "x" * 600,
        "/ui/api/runs/x/logs?after=-5",
        "/ui/api/runs/x/logs?since=yesterday",
    ],
)
def test_bad_input_answers_422(client, path):
    assert client.get(path).status_code == 422


def test_unknown_runs_answer_404_and_the_page_shell_still_loads(client):
    assert client.get("/ui/api/runs/nope").status_code == 404
    assert client.get("/ui/api/runs/nope/logs").status_code == 404
    assert client.get("/ui/api/runs/nope/stream").status_code == 404
    page = client.get('/runs/"><img src=x onerror=alert(1)>')
    assert page.status_code == 200 and "<img" not in page.text
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text  # autoescaped by Jinja2
