"""A class defined in ``__main__`` works on every Ray driver (it travels by value, cloudpickled).

A script written here defines the action in its ``__main__`` and runs it on ray-actor, ray-job
(both modes), ray-jobs-api and ray-pipeline against the session's cluster and a real pipeline
service, printing one JSON line of results; each driver's outcome is asserted on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray

SCRIPT = """
import json
import os
import sys
import traceback

from pydantic import BaseModel

import raydrive
from raydrive import BaseAction, ExecutionError


class MainParams(BaseModel):
    a: int
    b: int = 1
    fail: bool = False


class MainAdd(BaseAction[MainParams]):
    def execute(self):
        if self.params.fail:
            raise RuntimeError("failed in the __main__ class")
        return {"total": self.params.a + self.params.b, "module": type(self).__module__, "pid": os.getpid()}


ADDRESS = os.environ["RD_TEST_RAY_ADDRESS"]
DASHBOARD = os.environ["RD_TEST_DASHBOARD"]
SERVICE = os.environ["RD_TEST_SERVICE_URL"]


def ray_actor(params):
    with raydrive.get_executor("ray-actor", ray_address=ADDRESS) as ex:
        return ex.execute(MainAdd, params)


def ray_job(mode):
    def run(params):
        with raydrive.get_executor("ray-job", ray_address=ADDRESS, mode=mode) as ex:
            return ex.get_result(ex.submit(MainAdd, params), timeout=120)

    return run


def ray_jobs_api(params):
    with raydrive.get_executor(
        "ray-jobs-api", dashboard_address=DASHBOARD, python_executable=sys.executable
    ) as ex:
        return ex.get_result(ex.submit(MainAdd, params), timeout=120)


def ray_pipeline(params):
    with raydrive.get_executor("ray-pipeline", ray_address=ADDRESS, pipeline_service_url=SERVICE) as ex:
        run_id = ex.submit([MainAdd], params, name="main-class")
        ex.wait(run_id, timeout_seconds=120, poll_interval=0.5)
        return ex.get_result(run_id)


results = {}
for name, run in [
    ("ray-actor", ray_actor),
    ("ray-job-task", ray_job("task")),
    ("ray-job-actor", ray_job("actor")),
    ("ray-jobs-api", ray_jobs_api),
    ("ray-pipeline", ray_pipeline),
]:
    entry = {"submitter_pid": os.getpid()}
    try:
        entry["ok"] = run({"a": 40, "b": 2})
    except Exception:
        entry["ok_error"] = traceback.format_exc()
    try:
        run({"a": 1, "fail": True})
        entry["fail"] = "no error"
    except ExecutionError as exc:
        entry["fail"] = str(exc)
    except Exception:
        entry["fail"] = "wrong error: " + traceback.format_exc()
    results[name] = entry
print("RESULTS " + json.dumps(results), flush=True)
"""
DRIVERS = ["ray-actor", "ray-job-task", "ray-job-actor", "ray-jobs-api", "ray-pipeline"]


@pytest.fixture(scope="module")
def results(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The script's results per driver (it runs once for every test of this module)."""
    from raydrive.service.server import ServiceServer

    work = tmp_path_factory.mktemp("main_class")
    script = work / "main_class_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    with ServiceServer(db=work / "runs.db") as service:
        env = {
            **os.environ,
            "RD_TEST_RAY_ADDRESS": ray_cluster.address,
            "RD_TEST_DASHBOARD": ray_cluster.dashboard_url,
            "RD_TEST_SERVICE_URL": service.url,
            # The script imports raydrive from this checkout, not from its own directory.
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
            ),
        }
        done = subprocess.run(
            [sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, f"script failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1].removeprefix("RESULTS "))


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_main_class_runs_on_the_driver(results: dict[str, Any], driver: str) -> None:
    entry = results[driver]
    assert "ok_error" not in entry, entry.get("ok_error")
    result = entry["ok"]
    assert result["total"] == 42
    assert result["module"] == "__main__"  # the class itself travelled: nothing imported it by name
    assert result["pid"] != entry["submitter_pid"]  # and it ran on the cluster, not in the script


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_main_class_failure_is_an_execution_error(results: dict[str, Any], driver: str) -> None:
    assert "failed in the __main__ class" in results[driver]["fail"], results[driver]["fail"]
