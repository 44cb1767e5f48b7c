"""``ray-jobs-api`` retries and deadlines against a real local cluster (over its dashboard).

Retries are resubmissions under derived submission ids (``<id>--a2``...); the job id the user
holds stays the same. The actions record what they did in files under ``tmp_path`` (a run count,
timestamps), which is what the tests read; nothing waits on a sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive import ExecutionError, ExecutionTimeoutError, hookimpl
from raydrive.core.plugins import PluginManager
from raydrive.core.protocols import RetryingExecutor
from raydrive.core.retry import DEADLINE_EXCEEDED
from raydrive.drivers.ray_jobs_api import RayJobsApiExecutor
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

ACTIONS = '''
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class FileParams(BaseModel):
    path: str
    seconds: float = 0.0


def _count(path):
    """One more run recorded in ``path``; returns the runs so far, this one included."""
    with open(path, "a") as out:
        out.write(f"{time.time()}\\n")
    return len(Path(path).read_text().splitlines())


class KillOnce(BaseAction[FileParams]):
    """Attempt 1 kills its own process (as the OOM killer would); attempt 2 succeeds."""

    def execute(self):
        runs = _count(self.params.path)
        print(f"run {runs} of job {self.ctx.job_id}", flush=True)
        if runs == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"runs": runs}


class FailOnce(BaseAction[FileParams]):
    def execute(self):
        runs = _count(self.params.path)
        if runs == 1:
            raise RuntimeError("first run fails")
        return {"runs": runs}


class SleepAndCount(BaseAction[FileParams]):
    def execute(self):
        runs = _count(self.params.path)
        print(f"pid {os.getpid()} run {runs}", flush=True)
        time.sleep(self.params.seconds)
        return {"runs": runs}
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("jobsapi_retry_plugin")
    (root / "jobsapi_retry_actions.py").write_text(textwrap.dedent(ACTIONS))
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("jobsapi_retry_actions", None)


def make_executor(cluster: Any, plugin_dir: Path, **options: Any) -> RayJobsApiExecutor:
    options.setdefault("python_executable", sys.executable)
    return RayJobsApiExecutor(dashboard_address=cluster.dashboard_url, working_dir=str(plugin_dir), **options)


def runs(path: Path) -> list[float]:
    return [float(t) for t in path.read_text().split()] if path.exists() else []


class Recorder:
    def __init__(self) -> None:
        self.finished: list[tuple[str, str | None, int]] = []

    @hookimpl
    def raydrive_job_finished(self, event: Any) -> None:
        self.finished.append((event.job_id, event.status, event.attempt))


def test_a_killed_driver_is_retried_under_the_same_job_id(
    ray_cluster: Any, plugin_dir: Path, tmp_path: Path
) -> None:
    recorder = Recorder()
    manager = PluginManager()
    manager.register(recorder, name="recorder")
    backoff = {"initial": 1.0, "jitter": 0.0}
    ex = make_executor(ray_cluster, plugin_dir, plugins=manager, retries=2, retry_backoff=backoff)
    assert isinstance(ex, RetryingExecutor)
    count = tmp_path / "runs"
    job_id = ex.submit("jobsapi_retry_actions.KillOnce", {"path": str(count)})

    assert ex.get_result(job_id, timeout=180) == {"runs": 2}
    assert ex.get_status(job_id) == "SUCCEEDED"
    attempts = ex.get_attempts(job_id)
    assert [a.number for a in attempts] == [1, 2]
    assert [a.submission_id for a in attempts] == [job_id, f"{job_id}--a2"]
    assert [a.state for a in attempts] == ["FAILED", "SUCCEEDED"]
    assert "before reporting an outcome" in (attempts[0].error or "") and attempts[1].error is None
    first, second = runs(count)
    assert second - first >= backoff["initial"]  # the backoff, waited out on the cluster
    assert recorder.finished == [(job_id, "SUCCEEDED", 2)]

    logs = ex.get_logs(job_id)
    header = f"--- raydrive: attempt 2 of 3 (submission {job_id}--a2) ---"
    assert logs.index(f"run 1 of job {job_id}") < logs.index(header) < logs.index(f"run 2 of job {job_id}")
    streamed = "".join(ex.stream_logs(job_id, timeout=120))
    assert streamed.index("run 1 of") < streamed.index(header) < streamed.index("run 2 of")

    # Another process sees the same job: no third attempt, the same attempts.
    with make_executor(ray_cluster, plugin_dir) as other:
        assert other.get_result(job_id, timeout=60) == {"runs": 2}
        assert len(other.get_attempts(job_id)) == 2
    assert ex.delete(job_id) is True
    for submission_id in (job_id, f"{job_id}--a2"):
        assert httpx.get(f"{ray_cluster.dashboard_url}/api/jobs/{submission_id}").status_code == 404


def test_an_action_exception_is_retried_only_when_asked(
    ray_cluster: Any, plugin_dir: Path, tmp_path: Path
) -> None:
    infra = make_executor(ray_cluster, plugin_dir, retries=1)
    once = tmp_path / "infra"
    job_id = infra.submit("jobsapi_retry_actions.FailOnce", {"path": str(once)})
    with pytest.raises(ExecutionError, match="first run fails") as info:
        infra.get_result(job_id, timeout=180)
    assert info.value.error_type == "RuntimeError"
    assert len(infra.get_attempts(job_id)) == 1 and len(runs(once)) == 1

    anything = make_executor(ray_cluster, plugin_dir, retries=1, retry_on="any", retry_backoff={"initial": 0})
    twice = tmp_path / "any"
    job_id = anything.submit("jobsapi_retry_actions.FailOnce", {"path": str(twice)})
    assert anything.get_result(job_id, timeout=180) == {"runs": 2}
    attempts = anything.get_attempts(job_id)
    assert [a.state for a in attempts] == ["FAILED", "SUCCEEDED"]
    assert attempts[0].error_type == "RuntimeError" and "first run fails" in (attempts[0].error or "")


def test_stop_during_attempt_1_starts_no_attempt_2(
    ray_cluster: Any, plugin_dir: Path, tmp_path: Path
) -> None:
    ex = make_executor(ray_cluster, plugin_dir, retries=2, retry_on="any", retry_backoff={"initial": 0})
    count = tmp_path / "runs"
    job_id = ex.submit("jobsapi_retry_actions.SleepAndCount", {"path": str(count), "seconds": 120})
    for line in ex.stream_logs(job_id, timeout=120):
        if line.startswith("pid "):
            break
    assert ex.stop(job_id) is True
    wait_for(lambda: ex.get_status(job_id) == "STOPPED", 60, "the job to be STOPPED")
    with pytest.raises(ExecutionError) as info:
        ex.get_result(job_id, timeout=60)
    assert info.value.error_type == "STOPPED"
    with make_executor(ray_cluster, plugin_dir) as other:  # nobody resubmits it, later or elsewhere
        assert other.get_status(job_id) == "STOPPED"
        assert [a.state for a in other.get_attempts(job_id)] == ["STOPPED"]
    assert httpx.get(f"{ray_cluster.dashboard_url}/api/jobs/{job_id}--a2").status_code == 404
    assert len(runs(count)) == 1
    assert ex.stop(job_id) is False


def test_stop_between_attempts_leaves_a_marker(ray_cluster: Any, plugin_dir: Path, tmp_path: Path) -> None:
    ex = make_executor(ray_cluster, plugin_dir, retries=2)
    count = tmp_path / "runs"
    job_id = ex.submit("jobsapi_retry_actions.KillOnce", {"path": str(count)})
    # Attempt 1 dies; nobody has looked at the job through raydrive yet, so no attempt 2 runs.
    url = f"{ray_cluster.dashboard_url}/api/jobs/{job_id}"
    wait_for(lambda: httpx.get(url).json()["status"] == "FAILED", 120, "attempt 1 to fail")
    assert ex.stop(job_id) is True
    assert ex.get_status(job_id) == "STOPPED"
    assert [a.state for a in ex.get_attempts(job_id)] == ["FAILED"]
    marker = httpx.get(f"{url}--a2").json()
    assert marker["metadata"]["raydrive_stopped"] == "1"
    with pytest.raises(ExecutionError) as info:
        ex.get_result(job_id, timeout=60)
    assert info.value.error_type == "STOPPED"
    assert len(runs(count)) == 1
    assert ex.stop(job_id) is False


SUBMIT_AND_EXIT = """
import sys
from raydrive.drivers.ray_jobs_api import RayJobsApiExecutor

ex = RayJobsApiExecutor(
    dashboard_address=sys.argv[1], working_dir=sys.argv[2], python_executable=sys.executable, retries=1
)
print(ex.submit("jobsapi_retry_actions.SleepAndCount", {"path": sys.argv[3], "seconds": 600}, timeout_s=2))
"""


def test_a_deadline_is_enforced_with_the_submitter_gone(
    ray_cluster: Any, plugin_dir: Path, tmp_path: Path
) -> None:
    count = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.getcwd()])}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", SUBMIT_AND_EXIT, ray_cluster.dashboard_url, str(plugin_dir), str(count)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=True,
    )
    job_id = proc.stdout.strip().splitlines()[-1]
    url = f"{ray_cluster.dashboard_url}/api/jobs/{job_id}"
    # Ended on the cluster, with no raydrive process watching it.
    wait_for(lambda: httpx.get(url).json()["status"] == "FAILED", 120, "the job to pass its deadline")
    with make_executor(ray_cluster, plugin_dir) as ex:
        with pytest.raises(ExecutionTimeoutError) as info:
            ex.get_result(job_id, timeout=60)
        assert info.value.reason == DEADLINE_EXCEEDED
        assert ex.get_status(job_id) == "FAILED"
        attempts = ex.get_attempts(job_id)  # a deadline is not retried unless asked
        assert [(a.state, a.error_type) for a in attempts] == [("FAILED", "ExecutionTimeoutError")]
        assert "passed its deadline of 2 s" in ex.get_logs(job_id)
    assert len(runs(count)) == 1
    assert json.loads(httpx.get(url).text)["driver_exit_code"] == 1
