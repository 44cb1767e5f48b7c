"""Issue 24 #5 and #13: text no database stores (NUL, lone surrogates) and misspelt fields answer
422 naming where they are, on SQLite and PostgreSQL alike, and change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive.service.server import ServiceServer
from tests.pg import pg_server, pg_url  # noqa: F401

NUL, SURROGATE = "a\x00b", "name-\udcff.txt"  # what json.dumps makes of a non-UTF-8 file name


@pytest.fixture(params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServiceServer]:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)
    db = str(tmp_path / "text.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with ServiceServer(db=db) as svc:
        yield svc


def _send(http: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    # json.dumps escapes both as \u0000 and \udcff, as any client's JSON encoder sends them.
    content = json.dumps(body).encode()
    return http.request(method, path, content=content, headers={"content-type": "application/json"})


def _run(http: httpx.Client) -> str:
    pipeline = http.post("/api/v1/pipelines/", json={"name": "p", "actions": [{"name": "a"}]}).json()
    return http.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={"params": {"k": 1}}).json()["id"]


@pytest.mark.parametrize("text", [NUL, SURROGATE], ids=["nul", "surrogate"])
def test_nul_and_lone_surrogates_answer_422_naming_the_field(service: ServiceServer, text: str) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        run_id = _run(http)
        url = f"/api/v1/runs/{run_id}"
        cases = [
            ("POST", f"{url}/logs/", {"entries": [{"message": text}]}, ["body", "entries", 0, "message"]),
            ("POST", f"{url}/logs/", {"entries": [{"message": "m", "action_name": text}]},
             ["body", "entries", 0, "action_name"]),
            ("POST", f"{url}/progress", {"action_progress": {"name": "a", "message": text}},
             ["body", "action_progress", "message"]),
            ("POST", f"{url}/checkpoints/", {"action_name": text, "action_index": 0},
             ["body", "action_name"]),
            ("PATCH", url, {"error": text}, ["body", "error"]),
            ("POST", "/api/v1/pipelines/", {"name": "p", "actions": [{"name": "a"}], "description": text},
             ["body", "description"]),
        ]  # fmt: skip
        pipeline_id = http.get(url).json()["pipeline_id"]
        cases.append(
            (
                "POST",
                f"/api/v1/pipelines/{pipeline_id}/runs/",
                {"params": {"f": text}},
                ["body", "params", "f"],
            )
        )
        cases.append(
            (
                "POST",
                f"/api/v1/pipelines/{pipeline_id}/runs/",
                {"params": {text: 1}},
                ["body", "params", text],
            )
        )
        for method, path, body, loc in cases:
            answer = _send(http, method, path, body)
            assert answer.status_code == 422, (path, body, answer.text)
            (error,) = answer.json()["detail"]
            assert error["loc"][: len(loc) - 1] == loc[:-1] and "NUL" in error["msg"], (path, error)
        # Nothing was stored, and everything still reads.
        assert http.get(f"{url}/logs/").json() == [] and http.get(f"{url}/checkpoints/").json() == []
        assert len(http.get("/api/v1/runs/").json()) == 1 and http.get(url).json()["error"] is None


def test_nul_in_a_path_or_query_answers_422(service: ServiceServer) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        run_id = _run(http)
        paths = ["/api/v1/runs/a%00b", "/api/v1/pipelines/a%00b", "/ui/api/runs/a%00b"]
        for path in [*paths, f"/api/v1/runs/{run_id}/checkpoints/a%00b"]:
            answer = http.get(path)
            assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["path"], path
        answer = http.get(f"/api/v1/runs/{run_id}/logs/?action_name=a%00b")
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "action_name"]
        assert http.get(f"/api/v1/runs/{run_id}").status_code == 200


def test_misspelt_fields_answer_422_naming_them(service: ServiceServer) -> None:
    # Before: {"parms": ...} created a run with params {}; PATCH {"stauts": ...} answered 200.
    with httpx.Client(base_url=service.url, timeout=30) as http:
        run_id = _run(http)
        pipeline_id = http.get(f"/api/v1/runs/{run_id}").json()["pipeline_id"]
        answer = http.post(f"/api/v1/pipelines/{pipeline_id}/runs/", json={"parms": {"lr": 0.1}})
        assert answer.status_code == 422
        (error,) = answer.json()["detail"]
        assert error["loc"] == ["body", "parms"] and "did you mean 'params'" in error["msg"]
        answer = http.patch(f"/api/v1/runs/{run_id}", json={"stauts": "running"})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "stauts"]
        answer = http.post(
            f"/api/v1/runs/{run_id}/logs/", json={"entries": [{"mesage": "x", "message": "y"}]}
        )
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == [
            "body",
            "entries",
            0,
            "mesage",
        ]
        assert len(http.get("/api/v1/runs/").json()) == 1
        assert http.get(f"/api/v1/runs/{run_id}").json()["status"] == "pending"
        assert http.get(f"/api/v1/runs/{run_id}/logs/").json() == []


def test_every_field_of_the_contract_is_still_accepted(service: ServiceServer) -> None:
    # The reference client sends the contract's fields (PIPELINE_SERVICE_API.md): all still work.
    with httpx.Client(base_url=service.url, timeout=30) as http:
        body = {"name": "p", "actions": [{"name": "a", "entrypoint": "m:A"}], "description": "d"}
        pipeline = http.post("/api/v1/pipelines/", json=body)
        assert pipeline.status_code == 200, pipeline.text
        run = http.post(
            f"/api/v1/pipelines/{pipeline.json()['id']}/runs/", json={"params": {}, "work_dir": "/w"}
        )
        assert run.status_code == 200, run.text
        url = f"/api/v1/runs/{run.json()['id']}"
        action = {"name": "a", "status": "running", "progress": 0.5, "progress_step": "1/2",
                  "message": "m", "metrics": {"loss": 1.0}, "started_at": None, "completed_at": None,
                  "error": None}  # fmt: skip
        report = {"current_action": "a", "current_action_index": 0, "status": "running",
                  "action_progress": action, "error": None}  # fmt: skip
        assert http.post(f"{url}/progress", json=report).status_code == 200
        checkpoint = {"action_name": "a", "action_index": 0, "status": "completed", "params_snapshot": {},
                      "result": 1, "artifacts_path": "/a"}  # fmt: skip
        assert http.post(f"{url}/checkpoints/", json=checkpoint).status_code == 200
        logs = {"entries": [{"message": "m", "level": "INFO", "action_name": "a"}]}
        assert http.post(f"{url}/logs/", json=logs).status_code == 200
        assert (
            http.patch(url, json={"status": "completed", "result": {"x": 1}, "error": None}).status_code
            == 200
        )
