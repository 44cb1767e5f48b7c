"""The pipeline service's HTTP contract, over loopback with a real server and real httpx."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive.service.server import ServiceServer, start_service
from tests.conditions import answer, wait_for
from tests.services import tokenless_service


@pytest.fixture(autouse=True)
def _no_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    # One service for the module: every test makes its own pipelines and runs.
    with tokenless_service(tmp_path_factory.mktemp("api")) as svc:
        yield svc


@pytest.fixture
def http(service: ServiceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10) as client:
        yield client


def _pipeline(http: httpx.Client, actions: tuple[str, ...] = ("download", "train")) -> dict:
    response = http.post(
        "/api/v1/pipelines/",
        json={
            "name": "demo",
            "description": "two steps",
            "actions": [{"name": name, "entrypoint": f"plugin.{name}.Action"} for name in actions],
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def _run(http: httpx.Client, **body: Any) -> dict:
    pipeline = _pipeline(http)
    response = http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0, value
    return parsed


def test_health(http: httpx.Client) -> None:
    response = http.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_pipeline_create_list_get_delete(http: httpx.Client) -> None:
    created = _pipeline(http)
    assert set(created) >= {"id", "name", "actions", "description", "created_at"}
    assert created["actions"] == [
        {"name": "download", "entrypoint": "plugin.download.Action"},
        {"name": "train", "entrypoint": "plugin.train.Action"},
    ]
    _utc(created["created_at"])
    other = _pipeline(http, ("only",))

    listed = http.get("/api/v1/pipelines/").json()
    assert [p["id"] for p in listed[:2]] == [other["id"], created["id"]]  # newest first
    assert [p["id"] for p in http.get("/api/v1/pipelines/?skip=1&limit=1").json()] == [created["id"]]
    assert http.get(f"/api/v1/pipelines/{created['id']}").json() == created

    response = http.delete(f"/api/v1/pipelines/{created['id']}")
    assert (response.status_code, response.content) == (204, b"")
    missing = http.get(f"/api/v1/pipelines/{created['id']}")
    assert missing.status_code == 404
    assert missing.json()["missing"] == "pipeline" and created["id"] in missing.json()["detail"]


def test_run_lifecycle_list_get_patch_delete(http: httpx.Client) -> None:
    run = _run(http, params={"epochs": 3}, work_dir="/plugin")
    assert set(run) == {
        "id",
        "pipeline_id",
        "status",
        "params",
        "result",
        "error",
        "current_action",
        "current_action_index",
        "progress",
        "work_dir",
        "created_at",
        "started_at",
        "completed_at",
        # beyond the contract (added, as it allows): attempts in place and safe resume
        "attempt",
        "attempts",
        "fingerprint",
        "resumed_from",
        "max_attempts",
    }
    assert (run["status"], run["params"], run["work_dir"]) == ("pending", {"epochs": 3}, "/plugin")
    assert [(p["name"], p["status"], p["progress"]) for p in run["progress"]] == [
        ("download", "pending", 0.0),
        ("train", "pending", 0.0),
    ]
    assert run["started_at"] is None and run["completed_at"] is None
    _utc(run["created_at"])

    # No body at all is a run with defaults.
    bare = http.post(f"/api/v1/pipelines/{run['pipeline_id']}/runs/")
    assert bare.status_code == 200 and bare.json()["params"] == {}

    patched = http.patch(f"/api/v1/runs/{run['id']}", json={"status": "running"}).json()
    assert patched["status"] == "running"
    started = _utc(patched["started_at"])
    running = [r["id"] for r in http.get("/api/v1/runs/?status_filter=running").json()]
    pending = [r["id"] for r in http.get("/api/v1/runs/?status_filter=pending").json()]
    assert run["id"] in running and run["id"] not in pending
    assert pending[0] == bare.json()["id"]  # newest first
    assert http.get("/api/v1/runs/?limit=1").json()[0]["id"] == bare.json()["id"]

    done = http.patch(
        f"/api/v1/runs/{run['id']}", json={"status": "completed", "result": {"acc": 0.9}}
    ).json()
    assert (done["status"], done["result"]) == ("completed", {"acc": 0.9})
    assert _utc(done["started_at"]) == started and _utc(done["completed_at"]) >= started
    assert http.get(f"/api/v1/runs/{run['id']}").json() == done

    assert http.delete(f"/api/v1/runs/{run['id']}").status_code == 204
    assert http.get(f"/api/v1/runs/{run['id']}").status_code == 404


def test_progress_report_replaces_the_action_entry_and_sets_run_times(http: httpx.Client) -> None:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}/progress"
    first = http.post(
        url,
        json={
            "status": "running",
            "current_action": "download",
            "current_action_index": 0,
            "action_progress": {
                "name": "download",
                "status": "running",
                "progress": 0.5,
                "progress_step": "file 1/2",
                "message": "fetching",
                "metrics": {"mb": 10},
            },
        },
    )
    assert first.status_code == 200, first.text
    body = first.json()
    # The contract's answer: the run.
    assert body["params"] == run["params"] and body["progress"][0]["progress_step"] == "file 1/2"
    assert body["status"] == "running" and body["started_at"] is not None
    assert (body["id"], body["current_action"], body["current_action_index"]) == (run["id"], "download", 0)
    entry = http.get(url).json()["progress"][0]
    assert entry | {"started_at": None} == {
        "name": "download",
        "status": "running",
        "progress": 0.5,
        "progress_step": "file 1/2",
        "message": "fetching",
        "metrics": {"mb": 10},
        "started_at": None,
        "completed_at": None,
        "error": None,
    }
    _utc(entry["started_at"])

    http.post(url, json={"action_progress": {"name": "download", "status": "completed", "progress": 1.0}})
    view = http.get(url).json()
    assert set(view) == {
        "run_id",
        "pipeline_id",
        "status",
        "current_action",
        "current_action_index",
        "progress",
        "started_at",
        "completed_at",
        "error",
        "attempt",  # beyond the contract: the pipeline actor's attempt (retries in place)
    }
    assert (view["run_id"], view["pipeline_id"]) == (run["id"], run["pipeline_id"])
    assert view["current_action"] == "download" and view["current_action_index"] == 0
    assert [(p["name"], p["status"]) for p in view["progress"]] == [
        ("download", "completed"),
        ("train", "pending"),
    ]
    assert view["progress"][0]["metrics"] == {}  # replaced, not merged
    assert view["progress"][0]["started_at"] == entry["started_at"]
    _utc(view["progress"][0]["completed_at"])

    failed = http.post(url, json={"status": "failed", "error": "boom"}).json()
    assert failed["status"] == "failed" and http.get(url).json()["error"] == "boom"
    _utc(failed["completed_at"])


def test_a_terminal_run_is_not_changed_by_later_reports(http: httpx.Client) -> None:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}"
    http.post(f"{url}/progress", json={"status": "running"})
    cancelled = http.patch(url, json={"status": "cancelled"}).json()
    assert cancelled["status"] == "cancelled"

    late = http.post(
        f"{url}/progress",
        json={"status": "running", "action_progress": {"name": "train", "status": "running"}},
    )
    assert late.status_code == 409 and "cancelled" in late.json()["detail"]
    quiet = http.post(
        f"{url}/progress", json={"action_progress": {"name": "train", "status": "running", "progress": 0.4}}
    )
    assert quiet.status_code == 200 and quiet.json()["status"] == "cancelled"
    again = http.post(f"{url}/progress", json={"status": "cancelled"})
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert http.patch(url, json={"status": "completed"}).status_code == 409
    assert http.get(url).json() == cancelled


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/pipelines/", {"actions": [{"name": "a"}]}, ["body", "name"]),
        ("/api/v1/pipelines/", {"name": "p", "actions": []}, ["body", "actions"]),
        (
            "/api/v1/pipelines/",
            {"name": "p", "actions": [{"entrypoint": "m.A"}]},
            ["body", "actions", 0, "name"],
        ),
        ("/api/v1/pipelines/", {"name": "p", "actions": [{"name": "a"}, {"name": "a"}]}, ["body", "actions"]),
        ("/api/v1/pipelines/", "not json", ["body", 0]),  # position of the JSON error
        ("{run}/runs-of-pipeline", {"params": [1, 2]}, ["body", "params"]),
        ("{run}/progress", {"status": "done"}, ["body", "status"]),
        ("{run}/progress", {"current_action_index": -1}, ["body", "current_action_index"]),
        (
            "{run}/progress",
            {"action_progress": {"name": "a", "progress": 1.5}},
            ["body", "action_progress", "progress"],
        ),
        ("{run}/progress", {"action_progress": {"status": "running"}}, ["body", "action_progress", "name"]),
        ("{run}/checkpoints/", {"action_name": "a"}, ["body", "action_index"]),
        ("{run}/checkpoints/", {"action_name": "a", "action_index": 0, "status": "nope"}, ["body", "status"]),
        ("{run}/logs/", {"entries": [{"message": "m", "level": "loud"}]}, ["body", "entries", 0, "level"]),
        ("{run}/logs/", {"entries": [{"level": "info"}]}, ["body", "entries", 0, "message"]),
        ("{run}/logs/", {}, ["body", "entries"]),
    ],
)
def test_bad_bodies_answer_422_naming_the_field(
    http: httpx.Client, path: str, body: Any, field: list[Any]
) -> None:
    run = _run(http)
    if path == "{run}/runs-of-pipeline":
        path = f"/api/v1/pipelines/{run['pipeline_id']}/runs/"
    path = path.replace("{run}", f"/api/v1/runs/{run['id']}")
    if isinstance(body, str):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    assert field in [error["loc"] for error in response.json()["detail"]]


def test_bad_patch_and_query_values_answer_422(http: httpx.Client) -> None:
    run = _run(http)
    response = http.patch(f"/api/v1/runs/{run['id']}", json={"status": "finished"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "status"]
    response = http.get("/api/v1/runs/?status_filter=bogus")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "status_filter"]
    response = http.get("/api/v1/pipelines/?limit=0")
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]
    response = http.get(f"/api/v1/runs/{run['id']}/logs/?since=yesterday")
    assert response.json()["detail"][0]["loc"] == ["query", "since"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/pipelines/nope", None),
        ("DELETE", "/api/v1/pipelines/nope", None),
        ("POST", "/api/v1/pipelines/nope/runs/", {}),
        ("GET", "/api/v1/runs/nope", None),
        ("PATCH", "/api/v1/runs/nope", {"status": "running"}),
        ("DELETE", "/api/v1/runs/nope", None),
        ("POST", "/api/v1/runs/nope/progress", {"status": "running"}),
        ("GET", "/api/v1/runs/nope/progress", None),
        ("GET", "/api/v1/runs/nope/progress/stream", None),
        ("POST", "/api/v1/runs/nope/checkpoints/", {"action_name": "a", "action_index": 0}),
        ("GET", "/api/v1/runs/nope/checkpoints/", None),
        ("GET", "/api/v1/runs/nope/checkpoints/latest", None),
        ("GET", "/api/v1/runs/nope/checkpoints/train", None),
        ("POST", "/api/v1/runs/nope/logs/", {"entries": [{"message": "m"}]}),
        ("GET", "/api/v1/runs/nope/logs/", None),
    ],
)
def test_unknown_ids_answer_404_with_json_detail(
    http: httpx.Client, method: str, path: str, body: Any
) -> None:
    response = http.request(method, path, json=body)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    assert "nope" in response.json()["detail"]


def test_checkpoints_create_list_latest_and_by_action(http: httpx.Client) -> None:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}/checkpoints"
    none = http.get(f"{url}/latest")
    assert none.status_code == 404 and none.json()["missing"] == "checkpoint"
    assert http.get(f"{url}/").json() == []

    bodies = [
        {
            "action_name": "download",
            "action_index": 0,
            "status": "completed",
            "params_snapshot": {"dataset": 1},
            "result": {"path": "/d"},
            "artifacts_path": "/a",
        },
        {
            "action_name": "train",
            "action_index": 1,
            "status": "failed",
            "params_snapshot": {"dataset": 1, "path": "/d"},
            "result": None,
            "artifacts_path": None,
        },
        {
            "action_name": "download",
            "action_index": 0,
            "status": "completed",
            "params_snapshot": {"dataset": 2},
            "result": None,
            "artifacts_path": None,
        },
    ]
    created = []
    for body in bodies:
        response = http.post(f"{url}/", json=body)
        assert response.status_code == 200, response.text
        checkpoint = response.json()
        assert checkpoint | body == checkpoint and checkpoint["run_id"] == run["id"]
        _utc(checkpoint["created_at"])
        created.append(checkpoint)
    assert http.get(f"{url}/").json() == created  # oldest first
    assert http.get(f"{url}/latest").json() == created[2]
    assert http.get(f"{url}/download").json() == created[2]
    assert http.get(f"{url}/train").json() == created[1]
    assert http.get(f"{url}/export").status_code == 404


def test_logs_append_and_filter(http: httpx.Client) -> None:
    run = _run(http)
    url = f"/api/v1/runs/{run['id']}/logs/"
    first = http.post(
        url,
        json={
            "entries": [
                {"message": "start", "level": "info", "action_name": "download"},
                {"message": "slow", "level": "WARNING", "action_name": "download"},
            ]
        },
    )
    assert first.status_code == 200, first.text
    stored = first.json()
    assert [(e["message"], e["level"]) for e in stored] == [("start", "info"), ("slow", "warning")]
    assert all(set(e) >= {"id", "timestamp"} for e in stored)
    cutoff = stored[-1]["timestamp"]
    http.post(url, json={"entries": [{"message": "fit", "action_name": "train"}, {"message": "run-level"}]})

    every = http.get(url).json()
    assert [e["message"] for e in every] == ["start", "slow", "fit", "run-level"]
    assert [int(e["id"]) for e in every] == sorted(int(e["id"]) for e in every)
    assert [e["message"] for e in http.get(url, params={"action_name": "download"}).json()] == [
        "start",
        "slow",
    ]
    assert [e["message"] for e in http.get(url, params={"level": "warning"}).json()] == ["slow"]
    assert [e["message"] for e in http.get(url, params={"since": cutoff}).json()] == ["fit", "run-level"]
    assert [e["message"] for e in http.get(url, params={"limit": 1}).json()] == ["start"]


@pytest.mark.parametrize("slash", [True, False])
def test_trailing_slash_is_accepted_in_both_forms_without_redirect(http: httpx.Client, slash: bool) -> None:
    def path(p: str) -> str:
        return p.rstrip("/") + ("/" if slash else "")

    created = http.post(path("/api/v1/pipelines/"), json={"name": "p", "actions": [{"name": "a"}]})
    assert created.status_code == 200 and created.history == []
    pid = created.json()["id"]
    run = http.post(path(f"/api/v1/pipelines/{pid}/runs/"), json={"params": {"x": 1}})
    assert run.status_code == 200 and run.json()["params"] == {"x": 1}
    rid = run.json()["id"]
    answers = [
        http.get(path("/health")),
        http.get(path("/api/v1/pipelines/")),
        http.get(path(f"/api/v1/pipelines/{pid}")),
        http.get(path("/api/v1/runs/")),
        http.get(path(f"/api/v1/runs/{rid}")),
        http.patch(path(f"/api/v1/runs/{rid}"), json={"status": "running"}),
        http.post(path(f"/api/v1/runs/{rid}/progress"), json={"current_action": "a"}),
        http.get(path(f"/api/v1/runs/{rid}/progress")),
        http.post(path(f"/api/v1/runs/{rid}/checkpoints/"), json={"action_name": "a", "action_index": 0}),
        http.get(path(f"/api/v1/runs/{rid}/checkpoints/")),
        http.get(path(f"/api/v1/runs/{rid}/checkpoints/latest")),
        http.get(path(f"/api/v1/runs/{rid}/checkpoints/a")),
        http.post(path(f"/api/v1/runs/{rid}/logs/"), json={"entries": [{"message": "m"}]}),
        http.get(path(f"/api/v1/runs/{rid}/logs/")),
    ]
    assert [a.status_code for a in answers] == [200] * len(answers), [
        (a.request.url.path, a.status_code) for a in answers if a.status_code != 200
    ]
    assert http.get(path(f"/api/v1/runs/{rid}/progress")).json()["current_action"] == "a"
    with http.stream("GET", path(f"/api/v1/runs/{rid}/progress/stream")) as stream:
        assert stream.status_code == 200
    assert http.delete(path(f"/api/v1/runs/{rid}")).status_code == 204
    assert http.delete(path(f"/api/v1/pipelines/{pid}")).status_code == 204


def test_service_restart_keeps_runs_checkpoints_logs_and_event_ids(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    with start_service(db=db) as first, httpx.Client(base_url=first.url) as http:
        run = _run(http)
        rid = run["id"]
        http.post(f"/api/v1/runs/{rid}/progress", json={"status": "running"})
        http.post(f"/api/v1/runs/{rid}/checkpoints/", json={"action_name": "download", "action_index": 0})
        http.post(f"/api/v1/runs/{rid}/logs/", json={"entries": [{"message": "before"}]})
        before = http.get(f"/api/v1/runs/{rid}").json()
        latest_id = first.app.state.store.latest_event(rid).seq
    assert not first.running

    with start_service(db=db) as second, httpx.Client(base_url=second.url) as http:
        assert http.get(f"/api/v1/runs/{rid}").json() == before
        assert http.get(f"/api/v1/runs/{rid}/checkpoints/latest").json()["action_name"] == ("download")
        assert [e["message"] for e in http.get(f"/api/v1/runs/{rid}/logs/").json()] == ["before"]
        http.post(f"/api/v1/runs/{rid}/progress", json={"status": "completed"})
        with http.stream(
            "GET", f"/api/v1/runs/{rid}/progress/stream", headers={"Last-Event-ID": str(latest_id)}
        ) as stream:
            lines = list(stream.iter_lines())
        assert lines[:2] == [f"id: {latest_id + 1}", "event: completed"]


def test_auth_on_requires_the_bearer_token_except_for_health(tmp_path: Path) -> None:
    secret = "s3cret-token-value"
    with start_service(db=tmp_path / "auth.db", token=secret) as svc:
        with httpx.Client(base_url=svc.url) as anonymous:
            assert anonymous.get("/health").status_code == 200
            denied = anonymous.get("/api/v1/pipelines/")
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"] == "Bearer"
            assert secret not in denied.text
            assert anonymous.get("/api/v1/runs/x/progress/stream").status_code == 401
            assert anonymous.post("/api/v1/pipelines/", json={}).status_code == 401
            wrong = anonymous.get(
                "/api/v1/pipelines/", headers={"Authorization": "Bearer s3cret-token-valuX"}
            )
            assert wrong.status_code == 401
            basic = anonymous.get("/api/v1/pipelines/", headers={"Authorization": secret})
            assert basic.status_code == 401
        with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {secret}"}) as authorized:
            assert authorized.get("/api/v1/pipelines/").status_code == 200
            assert authorized.get("/health").status_code == 200


def test_auth_token_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYDRIVE_SERVICE_TOKEN", "from-env")
    with start_service(db=tmp_path / "env.db") as svc, httpx.Client(base_url=svc.url) as http:
        assert http.get("/api/v1/runs/").status_code == 401
        assert http.get("/api/v1/runs/", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_auth_off_needs_no_header(http: httpx.Client) -> None:
    assert http.get("/api/v1/runs/").status_code == 200


@pytest.mark.parametrize("shared_run", [True, False], ids=["one-run", "run-per-thread"])
def test_concurrent_reporters_all_succeed_and_are_all_stored(
    service: ServiceServer, shared_run: bool
) -> None:
    threads_n, reports = 8, 50
    actions = tuple(f"a{n}" for n in range(threads_n))
    with httpx.Client(base_url=service.url) as http:
        # Every run has one action per thread, so each thread owns one entry.
        pipeline = _pipeline(http, actions)
        run_ids = [
            http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/").json()["id"]
            for _ in range(1 if shared_run else threads_n)
        ]
    failures: list[str] = []

    def report(n: int) -> None:
        run_id = run_ids[0 if shared_run else n]
        with httpx.Client(base_url=service.url, timeout=30) as http:
            for i in range(reports):
                answer = http.post(
                    f"/api/v1/runs/{run_id}/progress",
                    json={
                        "action_progress": {
                            "name": f"a{n}",
                            "status": "running",
                            "progress": i / reports,
                            "metrics": {"i": i},
                        }
                    },
                )
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code}: {answer.text}")
                if i % 10 == 0:
                    logged = http.post(
                        f"/api/v1/runs/{run_id}/logs/", json={"entries": [{"message": f"{n}:{i}"}]}
                    )
                    if logged.status_code != 200:
                        failures.append(f"{logged.status_code}: {logged.text}")

    workers = [threading.Thread(target=report, args=(n,)) for n in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []

    store = service.app.state.store
    with httpx.Client(base_url=service.url) as http:
        for index, run_id in enumerate(run_ids):
            writers = range(threads_n) if shared_run else [index]
            expected = len(writers) * reports
            assert [e.seq for e in store.events_after(run_id, 0)] == list(range(1, expected + 2))
            view = http.get(f"/api/v1/runs/{run_id}/progress").json()
            for n in writers:
                assert view["progress"][n]["metrics"] == {"i": reports - 1}
            logs = http.get(f"/api/v1/runs/{run_id}/logs/", params={"limit": 10_000}).json()
            assert sorted(e["message"] for e in logs) == sorted(
                f"{n}:{i}" for n in writers for i in range(0, reports, 10)
            )


def test_serve_runs_in_the_foreground_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """The blocking entry point behind ``raydrive service``, in its own process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "cli-secret-token"
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "RAYDRIVE_SERVICE_TOKEN": secret,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    code = (
        "import sys; from raydrive.service.server import serve; "
        "serve(port=int(sys.argv[1]), db=sys.argv[2], access_log=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(port), str(tmp_path / "cli.db")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        auth = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=5) as http:

            def up() -> httpx.Response | None:
                assert proc.poll() is None, "the service exited"
                return answer(lambda: http.get("/health"))

            wait_for(up, 30, "the service to answer")
            run = _run(http)
            with http.stream("GET", f"/api/v1/runs/{run['id']}/progress/stream") as stream:
                lines = stream.iter_lines()
                assert next(lines) == "id: 1"
                proc.send_signal(signal.SIGINT)
                rest = list(lines)  # the open stream ends instead of holding up the shutdown
        assert all(not line.startswith("id:") for line in rest)
        output, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert f"running on http://127.0.0.1:{port}" in output
    assert "bearer token required" in output and str(tmp_path / "cli.db") in output
    assert "POST /api/v1/pipelines/" in output  # the access log was on
    assert "Traceback" not in output and "Finished server process" in output
    assert secret not in output
