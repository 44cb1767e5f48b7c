"""Issue 23 (service parts): the one redaction rule on every free-text field the service stores,
streams or shows. A URL password put in each field never reaches the database, the API, the
stream, the page or /metrics, on SQLite and PostgreSQL alike; what the rule does not call a
secret comes back as it went in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from raydrive.core.redaction import redact
from raydrive.service.server import ServiceServer
from tests.pg import pg_server, pg_url  # noqa: F401

PASSWORD = "pl4nted-pw-23"
SECRET = f"postgresql://u:{PASSWORD}@db.example/x"
ACTION = f"dl {SECRET}"
METRICS = {"loss": 0.25, "step": 3, "tokens_per_second": 12.5, "max_tokens": 512}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "masking.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def service(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceServer]:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)
    with ServiceServer(db=backend) as svc:
        yield svc


def _stored_text(backend: str) -> str:
    """Everything the database holds, as text (the SQLite file and its WAL; every PostgreSQL row)."""
    if backend.startswith("postgresql"):
        import psycopg

        with psycopg.connect(backend) as conn:
            tables = ("pipelines", "runs", "run_events", "checkpoints", "logs")
            return "\n".join(str(conn.execute(f"SELECT t::text FROM {t} t").fetchall()) for t in tables)
    files = [Path(backend), Path(backend + "-wal")]
    return "\n".join(f.read_bytes().decode("latin-1") for f in files if f.exists())


def _first_event(http: httpx.Client, path: str) -> str:
    with http.stream("GET", path) as answer:
        assert answer.status_code == 200
        text = ""
        for chunk in answer.iter_text():
            text += chunk
            if "\n\n" in text:
                return text
    return text


def test_a_url_password_in_every_free_text_field_is_masked_everywhere(
    service: ServiceServer, backend: str
) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as http:
        pipeline = http.post(
            "/api/v1/pipelines/",
            json={
                "name": f"p {SECRET}",
                "description": SECRET,
                "actions": [{"name": ACTION, "entrypoint": f"m:C {SECRET}"}, {"name": "train"}],
            },
        )
        assert pipeline.status_code == 200, pipeline.text
        run = http.post(
            f"/api/v1/pipelines/{pipeline.json()['id']}/runs/",
            json={"params": {"url": SECRET}, "work_dir": SECRET},
        ).json()
        url = f"/api/v1/runs/{run['id']}"
        report = {
            "status": "running",
            "current_action": ACTION,
            "current_action_index": 0,
            "action_progress": {
                "name": ACTION,  # the reporter sends the name it knows: it matches the masked one
                "status": "running",
                "progress_step": SECRET,
                "message": SECRET,
                "error": SECRET,
                "metrics": METRICS,
            },
            "attempt": {"number": 1, "state": "RUNNING", "error": SECRET},
            "error": SECRET,
        }
        assert http.post(f"{url}/progress", json=report).status_code == 200
        checkpoint = {"action_name": ACTION, "action_index": 0, "artifacts_path": SECRET, "result": {"n": 1}}
        assert http.post(f"{url}/checkpoints/", json=checkpoint).status_code == 200
        logs = {"entries": [{"message": SECRET, "action_name": ACTION}]}
        assert http.post(f"{url}/logs/", json=logs).status_code == 200

        answers = {
            path: http.get(path)
            for path in (
                f"/api/v1/pipelines/{pipeline.json()['id']}",
                url,
                f"{url}/progress",
                f"{url}/checkpoints/",
                f"{url}/logs/",
                f"{url}/logs/?action_name={quote(ACTION, safe='')}",
                "/ui/api/runs",
                f"/ui/api/runs/{run['id']}",
                f"/ui/api/runs/{run['id']}/logs",
                "/metrics",
            )
        }
        for path, answer in answers.items():
            assert answer.status_code == 200, (path, answer.text)
            assert PASSWORD not in answer.text, path
        streams = [
            _first_event(http, f"{url}/progress/stream"),
            _first_event(http, f"/ui/api/runs/{run['id']}/stream"),
        ]
        for text in streams:
            assert "event: progress" in text and PASSWORD not in text
            assert "***" in text  # the current action is there, masked

        stored = http.get(url).json()
        assert stored["work_dir"] != SECRET and "***" in stored["work_dir"]
        entry = stored["progress"][0]
        assert entry["name"] == stored["current_action"] and "***" in entry["name"]
        assert all("***" in entry[key] for key in ("progress_step", "message", "error"))
        # Metrics go through the rule and nothing more: what the rule keeps comes back as sent.
        assert entry["metrics"] == redact(METRICS)
        assert len(answers[f"{url}/logs/?action_name={quote(ACTION, safe='')}"].json()) == 1
    assert PASSWORD not in _stored_text(backend)
