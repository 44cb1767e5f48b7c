"""ray-jobs-api under stops that race the job's start, and foreign submissions under its ids."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raydrive import SubmissionError, get_executor
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

ACTIONS = '''
import os
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class MarkParams(BaseModel):
    dir: str
    seconds: float = 60.0


class Mark(BaseAction[MarkParams]):
    """Leaves a file named after its pid as it starts, then sleeps."""

    def execute(self):
        (Path(self.params.dir) / f"started-{os.getpid()}").write_text("x")
        time.sleep(self.params.seconds)
        return "woke"


class EnvParams(BaseModel):
    name: str


class Env(BaseAction[EnvParams]):
    def execute(self):
        return os.environ.get(self.params.name)


class Fail(BaseAction[MarkParams]):
    def execute(self):
        raise ValueError("attempt failed")
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("faults_jobsapi")
    (root / "faults_jobsapi_actions.py").write_text(textwrap.dedent(ACTIONS))
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("faults_jobsapi_actions", None)


@pytest.fixture(scope="module")
def executor(ray_cluster: Any, plugin_dir: Path) -> Iterator[Any]:
    with get_executor(
        "ray-jobs-api",
        dashboard_address=ray_cluster.dashboard_url,
        working_dir=str(plugin_dir),
        python_executable=sys.executable,
    ) as ex:
        yield ex


def _entry_processes(job_id: str) -> list[int]:
    """Live processes running raydrive's entry for ``job_id``: the entry itself, or the shell
    (``sh -c '... --job-id <id> ...'``) about to start it."""
    import importlib

    importlib.import_module("ray")  # Ray puts the psutil it bundles on sys.path
    psutil = importlib.import_module("psutil")

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        command = " ".join(proc.info.get("cmdline") or [])
        ours = f"--job-id {job_id}" in command and "ray_jobs_api.entry" in command
        if ours and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc.info["pid"])
    return found


def test_stop_of_a_pending_job_leaves_no_entry_running(executor, tmp_path):
    # Ray's supervisor ran the entrypoint through `sh -c`; a stop that landed before the shell had
    # started python killed the shell and left the entry (and the action) running as an orphan.
    leaks = []
    for n in range(5):
        marks = tmp_path / f"try{n}"
        marks.mkdir()
        job_id = f"pending-stop-{uuid.uuid4().hex[:8]}"
        executor.submit("faults_jobsapi_actions.Mark", {"dir": str(marks)}, job_id=job_id)
        assert executor.stop(job_id) is True
        # stop() returns once the entry's process is gone: nothing of the job runs from now on.
        wait_for(lambda j=job_id: executor.get_status(j) == "STOPPED", 60, "the job to read STOPPED")
        left = _entry_processes(job_id)
        started = [p.name for p in marks.iterdir()]
        if left or started:
            leaks.append((job_id, left, started))
    assert leaks == []


def test_next_attempt_does_not_adopt_a_foreign_submission_under_its_id(ray_cluster, plugin_dir, tmp_path):
    # A job submitted by someone else under `<id>--a2` is not attempt 2 of `<id>`.
    import httpx

    job_id = f"foreign-{uuid.uuid4().hex[:8]}"
    foreign = f"{job_id}--a2"
    answer = httpx.post(
        f"{ray_cluster.dashboard_url}/api/jobs/",
        json={"entrypoint": "true", "submission_id": foreign, "metadata": {"owner": "someone else"}},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    ex = get_executor(
        "ray-jobs-api",
        dashboard_address=ray_cluster.dashboard_url,
        working_dir=str(plugin_dir),
        python_executable=sys.executable,
        retries=1,
        retry_on="any",
        retry_backoff={"initial": 0.0, "max": 0.0, "factor": 1.0, "jitter": 0.0},
    )
    with ex:
        submitted = ex.submit("faults_jobsapi_actions.Fail", {"dir": str(tmp_path)}, job_id=job_id)
        with pytest.raises(SubmissionError, match="not attempt 2"):
            ex.get_result(submitted, timeout=120)


def test_an_interpreter_with_leading_assignments_still_execs(ray_cluster, plugin_dir):
    # python_executable may start with shell assignments; they go before the entry's `exec`.
    with get_executor(
        "ray-jobs-api",
        dashboard_address=ray_cluster.dashboard_url,
        working_dir=str(plugin_dir),
        python_executable=f"RAYDRIVE_FAULTS_PROBE=seen {sys.executable}",
    ) as ex:
        job = ex.submit("faults_jobsapi_actions.Env", {"name": "RAYDRIVE_FAULTS_PROBE"})
        assert ex.get_result(job, timeout=120) == "seen"
