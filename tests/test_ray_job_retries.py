"""ray-job retries and deadlines on the session's real local Ray cluster.

The registry on the cluster retries under the same job id and enforces deadlines; the actions
(tests/actions_job_policy.py) record what happened in files, and the tests read those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from raydrive import ExecutionError, ExecutionTimeoutError, JobState, hookimpl
from raydrive.core.policy_types import JobEvent
from raydrive.core.protocols import RetryingExecutor
from raydrive.core.retry import DEADLINE_EXCEEDED, INFRA_ERROR_TYPES, Attempt
from raydrive.drivers.ray_job import RayJobExecutor
from tests.actions_job_policy import FailTimesAction, KillOnceAction, NapAction

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
MODES = ["task", "actor"]
FAST = {"initial": 0.1, "max": 1.0, "factor": 2.0, "jitter": 0.0}


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _executor(cluster, mode: str = "task", **options) -> RayJobExecutor:
    extra = {"num_cpus": 0.1} if mode == "actor" else {}
    return RayJobExecutor(ray_address=cluster.address, mode=mode, **extra, **options)


@pytest.mark.parametrize("mode", MODES)
def test_sigkilled_worker_succeeds_on_attempt_2_same_job_id(ray_cluster, plugin_manager, tmp_path, mode):
    finished: list[JobEvent] = []

    class Recorder:
        @hookimpl
        def raydrive_job_finished(self, event: JobEvent) -> None:
            finished.append(event)

    plugin_manager.register(Recorder(), name="recorder")
    executor = _executor(ray_cluster, mode, retries=2, retry_backoff=FAST, plugins=plugin_manager)
    assert isinstance(executor, RetryingExecutor)
    job = executor.submit(KillOnceAction, {"dir": str(tmp_path)}, job_id=_id(f"kill-{mode}"))
    result = executor.get_result(job, timeout=120)
    assert result["pid"] != result["killed"]  # attempt 2 ran in another process
    assert executor.get_status(job) == JobState.SUCCEEDED
    attempts = executor.get_attempts(job)
    assert [a.number for a in attempts] == [1, 2] and all(isinstance(a, Attempt) for a in attempts)
    assert [a.state for a in attempts] == ["FAILED", "SUCCEEDED"]
    assert attempts[0].error_type in INFRA_ERROR_TYPES and attempts[1].error is None  # WorkerCrashed...
    assert attempts[0].ended_at <= attempts[1].started_at
    executor.get_result(job)  # read again: the finished event is still reported once
    assert [(e.job_id, e.status, e.attempt) for e in finished] == [(job, "SUCCEEDED", 2)]


def test_action_exception_retried_only_when_asked(ray_cluster, tmp_path):
    # Default retry_on="infra": the action's own exception is final, even with retries left.
    default_dir = tmp_path / "default"
    default_dir.mkdir()
    executor = _executor(ray_cluster, retries=3, retry_backoff=FAST)
    job = executor.submit(FailTimesAction, {"dir": str(default_dir)})
    with pytest.raises(ExecutionError) as info:
        executor.get_result(job, timeout=60)
    assert info.value.error_type == "ValueError"
    assert [a.state for a in executor.get_attempts(job)] == ["FAILED"]

    # "any", and a list naming the type: retried; a list naming another type: not.
    for retry_on, error, expected in [
        ("any", "ValueError", ["FAILED", "SUCCEEDED"]),
        (["ValueError"], "ValueError", ["FAILED", "SUCCEEDED"]),
        (["ValueError"], "KeyError", ["FAILED"]),
    ]:
        out = tmp_path / f"{retry_on}-{error}"
        out.mkdir()
        retrying = _executor(ray_cluster, retries=3, retry_on=retry_on, retry_backoff=FAST)
        job = retrying.submit(FailTimesAction, {"dir": str(out), "error": error})
        if expected[-1] == "SUCCEEDED":
            assert retrying.get_result(job, timeout=60) == {"attempt": 2}
        else:
            with pytest.raises(ExecutionError):
                retrying.get_result(job, timeout=60)
        attempts = retrying.get_attempts(job)
        assert [a.state for a in attempts] == expected, retry_on
        assert attempts[0].error_type == error and "attempt 1" in attempts[0].error


def test_backoff_between_attempts_is_honoured(ray_cluster, tmp_path):
    backoff = {"initial": 0.5, "max": 5.0, "factor": 2.0, "jitter": 0.0}
    executor = _executor(ray_cluster, retries=2, retry_on="any", retry_backoff=backoff)
    job = executor.submit(FailTimesAction, {"dir": str(tmp_path), "fail_times": 2})
    assert executor.get_result(job, timeout=90) == {"attempt": 3}
    events = [line.split() for line in (tmp_path / "attempts").read_text().splitlines()]
    fails = [float(t) for kind, t in events if kind == "fail"]
    starts = [float(t) for kind, t in events if kind == "start"]
    assert len(starts) == 3 and len(fails) == 2
    # The action's own clock: attempt n+1 starts at least the backoff after attempt n failed.
    assert starts[1] - fails[0] >= 0.5
    assert starts[2] - fails[1] >= 1.0
    assert len(executor.get_attempts(job)) == 3


SUBMIT_WITH_DEADLINE_AND_EXIT = """
import json, sys
from raydrive.drivers.ray_job import RayJobExecutor
executor = RayJobExecutor(ray_address=sys.argv[1], mode={mode!r}, num_cpus=0.1, retries=2, **{options})
job = executor.submit("tests.actions_job_policy.NapAction", {{"seconds": 120, "dir": {dir!r}}},
                      job_id={job_id!r}, **{call})
print(json.dumps({{"submitted": job}}))
"""


@pytest.mark.parametrize("mode", MODES)
def test_deadline_enforced_on_the_cluster_with_the_submitter_gone(ray_cluster, tmp_path, mode):
    # Task mode: the option; actor mode: the per-call argument. Both: retries=2 ("infra"), and a
    # deadline is not retried unless asked.
    options, call = ({"timeout_s": 2}, {}) if mode == "task" else ({"timeout_s": 600}, {"timeout_s": 2})
    job_id = _id(f"deadline-{mode}")
    code = SUBMIT_WITH_DEADLINE_AND_EXIT.format(
        mode=mode, options=options, call=call, dir=str(tmp_path), job_id=job_id
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, ray_cluster.address],
        cwd=ROOT,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"submitted": job_id}
    executor = RayJobExecutor(ray_address=ray_cluster.address)
    with pytest.raises(ExecutionTimeoutError) as info:
        executor.get_result(job_id, timeout=120)
    assert info.value.reason == DEADLINE_EXCEEDED and info.value.job_id == job_id
    assert executor.get_status(job_id) == JobState.FAILED
    attempts = executor.get_attempts(job_id)
    assert [(a.state, a.error_type) for a in attempts] == [("FAILED", "ExecutionTimeoutError")]
    assert list(tmp_path.glob("nap-*"))  # it did start, and was stopped at its deadline


def test_deadline_retried_when_asked_and_cli_status_shows_attempts(ray_cluster, tmp_path):
    executor = _executor(
        ray_cluster, retries=1, retry_on=["ExecutionTimeoutError"], retry_backoff=FAST, timeout_s=1
    )
    job = executor.submit(NapAction, {"seconds": 120})
    with pytest.raises(ExecutionTimeoutError):
        executor.get_result(job, timeout=120)
    attempts = executor.get_attempts(job)
    assert [(a.number, a.error_type) for a in attempts] == [
        (1, "ExecutionTimeoutError"),
        (2, "ExecutionTimeoutError"),
    ]
    cli = Path(sys.executable).with_name("raydrive")
    out = subprocess.run(
        [str(cli), "status", job, "-e", "ray-job", "-o", f"ray_address={ray_cluster.address}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "FAILED"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["attempt", "1", "FAILED"],
        ["attempt", "2", "FAILED"],
    ]
    assert all("ExecutionTimeoutError" in line for line in lines[1:])


def test_bad_per_call_arguments_are_clear_errors(ray_cluster):
    from raydrive import InvalidOptionsError

    executor = _executor(ray_cluster)
    with pytest.raises(InvalidOptionsError, match="timeout_s"):
        executor.submit(NapAction, {"seconds": 0}, timeout_s=-1)
    with pytest.raises(InvalidOptionsError, match="priority"):
        executor.submit(NapAction, {"seconds": 0}, priority="high")  # type: ignore[arg-type]
