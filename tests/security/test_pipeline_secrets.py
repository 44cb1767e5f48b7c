"""ray-pipeline never gives the service a secret value (issue 9): params and results declared
secret (SecretStr fields, secret-looking names) are stored as ***, in runs, checkpoints, logs and
errors with their tracebacks; the actor keeps the real values for the next action, and a resume
takes them from the caller again. Real Ray cluster, real service, the database file read raw."""

from __future__ import annotations

import json

import httpx
import pytest

import raydrive
from raydrive import PipelineDefinition, SubmissionError
from raydrive.core.pipeline import RunStatus
from raydrive.service.server import ServiceServer
from tests.test_ray_pipeline import actions, plugin_dir  # noqa: F401 - fixture

pytestmark = pytest.mark.ray
TOKEN = "tok-9f8e7d6c5b4a-planted"
PASSWORD = "pw-0a1b2c3d4e-planted"
SECRETS = PipelineDefinition("secrets", actions("SecretAction", "AfterSecretAction"))


def _everything_the_api_shows(url: str, run_id: str) -> str:
    paths = [
        f"/api/v1/runs/{run_id}",
        f"/api/v1/runs/{run_id}/progress",
        f"/api/v1/runs/{run_id}/checkpoints/",
        f"/api/v1/runs/{run_id}/logs/?limit=1000",
        "/api/v1/runs/?limit=1000",
    ]
    texts = []
    for path in paths:
        response = httpx.get(url + path, timeout=30)
        assert response.status_code == 200, (path, response.text)
        texts.append(response.text)
    return "\n".join(texts)


def _assert_nowhere(text: str | bytes) -> None:
    blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for secret in (TOKEN, PASSWORD):
        assert secret not in blob


def test_secrets_never_reach_the_service_and_a_resume_asks_for_them(ray_cluster, plugin_dir, tmp_path):  # noqa: F811
    db = tmp_path / "runs.db"
    after = tmp_path / "after-fails"
    after.write_text("x")
    params = {"api_token": TOKEN, "db_password": PASSWORD, "after_marker": str(after)}
    with (
        ServiceServer(db=db) as service,
        raydrive.get_executor(
            "ray-pipeline", ray_address=ray_cluster.address, working_dir=plugin_dir,
            pipeline_service_url=service.url,
        ) as ex,
    ):  # fmt: skip
        failed = ex.submit(SECRETS, params)
        with pytest.raises(raydrive.ExecutionError) as info:
            ex.wait(failed, timeout_seconds=120, poll_interval=1.0)
        _assert_nowhere(str(info.value))
        run = ex.client.get_run(failed)
        assert run.status == RunStatus.FAILED and "expired" in run.error and "Traceback" in run.error
        assert run.params["api_token"] == "***" and run.params["db_password"] == "***"
        checkpoint = ex.client.get_latest_checkpoint(failed)
        assert checkpoint.action_name == "SecretAction"
        assert checkpoint.params_snapshot["api_token"] == "***" and checkpoint.result["echo"] == "***"
        assert any("connecting with ***" in e.message for e in ex.client.list_logs(failed))

        runs_before = len(ex.client.list_runs(limit=1000))
        with pytest.raises(SubmissionError, match="api_token") as missing:
            ex.submit(SECRETS, {}, resume_from=failed)
        # Every masked value is asked for, secret results of the skipped action included.
        assert all(key in str(missing.value) for key in ("db_password", "session_key", "echo"))
        assert len(ex.client.list_runs(limit=1000)) == runs_before  # nothing registered or started
        after.unlink()
        again = {
            "api_token": TOKEN,
            "db_password": PASSWORD,
            "session_key": f"{TOKEN}-session",
            "echo": PASSWORD,
        }
        resumed = ex.submit(SECRETS, again, resume_from=failed)
        result = ex.get_result(resumed, timeout=120)  # AfterSecretAction got the real values
        assert result == {"ok": True, "length": len(TOKEN)}

        for run_id in (failed, resumed):
            _assert_nowhere(_everything_the_api_shows(service.url, run_id))
            _assert_nowhere(json.dumps(ex.client.get_run(run_id).model_dump(mode="json")))
    for path in tmp_path.glob("runs.db*"):  # the database itself, WAL included
        _assert_nowhere(path.read_bytes())
