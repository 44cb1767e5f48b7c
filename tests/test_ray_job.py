"""ray-job in both modes on the session's real local Ray cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import raydrive
from raydrive import (
    DuplicateJobError,
    ExecutionError,
    ExecutionTimeoutError,
    InfeasibleResourcesError,
    JobNotFoundError,
    JobState,
    ValidationError,
)
from raydrive.core.protocols import AsyncExecutor
from raydrive.drivers.ray_job import RayJobExecutor
from tests.actions_for_tests import AddAction, BoomAction, RepeatAction
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]
WD = Path(__file__).parent / "data" / "ray_wd"
MODES = ["task", "actor"]


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait_state(executor: RayJobExecutor, job_id: str, wanted: str, timeout: float = 20) -> str:
    return wait_for(
        lambda: (state := executor.get_status(job_id)) == wanted and state, timeout, f"{job_id} {wanted}"
    )


@pytest.mark.parametrize("mode", MODES)
def test_large_params_and_results_cross_intact(ray_cluster, mode):
    executor = RayJobExecutor(ray_address=ray_cluster.address, mode=mode)
    text = "0123456789abcdef" * 16_384  # 256 KiB: over Ray's inline limit, both ways
    job = executor.submit(RepeatAction, {"text": text, "times": 4})
    assert executor.wait(job, timeout_seconds=60) == "SUCCEEDED"
    assert executor.get_result(job) == {"text": text * 4, "length": len(text) * 4}


@pytest.mark.parametrize("mode", MODES)
def test_submit_status_wait_result(ray_cluster, mode):
    executor = raydrive.get_executor("ray-job", ray_address=ray_cluster.address, mode=mode)
    assert isinstance(executor, RayJobExecutor) and isinstance(executor, AsyncExecutor)
    job = executor.submit(AddAction, {"a": 40, "b": 2})
    assert executor.get_status(job) in (JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED)
    assert executor.wait(job, timeout_seconds=60) == "SUCCEEDED"
    assert executor.get_status(job) == JobState.SUCCEEDED
    assert executor.get_result(job) == {"total": 42}
    assert executor.get_result(job) == {"total": 42}  # results stay until their TTL or delete()

    failed = executor.submit(BoomAction, {"message": f"boom in {mode} mode"})
    with pytest.raises(ExecutionError) as info:
        executor.wait(failed, timeout_seconds=60)
    err = info.value
    assert type(err) is ExecutionError and err.error_type == "RuntimeError"
    assert err.error_message == f"boom in {mode} mode" and "actions_for_tests.py" in err.remote_traceback
    assert err.job_id == failed
    assert executor.get_status(failed) == JobState.FAILED
    with pytest.raises(ExecutionError):
        executor.get_result(failed)


@pytest.mark.parametrize("mode", MODES)
def test_params_are_validated_locally_and_in_the_worker(ray_cluster, mode):
    executor = RayJobExecutor(ray_address=ray_cluster.address, working_dir=WD, mode=mode)
    with pytest.raises(ValidationError):
        executor.submit(AddAction, {"a": "x"})  # importable here: refused before submission
    job = executor.submit("rdwd_actions.WdAddAction", {"a": "x"})  # only the worker can check
    with pytest.raises(ValidationError) as info:
        executor.get_result(job, timeout=60)
    assert type(info.value) is ValidationError and info.value.errors[0]["loc"] == ["a"]
    assert executor.get_status(job) == JobState.FAILED


def test_job_ids_unknown_duplicate_deleted(ray_cluster):
    executor = RayJobExecutor(ray_address=ray_cluster.address)
    job_id = _id("dup")
    assert executor.submit(AddAction, {"a": 1}, job_id=job_id) == job_id
    with pytest.raises(DuplicateJobError):
        executor.submit(AddAction, {"a": 2}, job_id=job_id)
    # Another executor of this process sees the same registry.
    with pytest.raises(DuplicateJobError):
        RayJobExecutor(ray_address=ray_cluster.address, mode="actor").submit(
            AddAction, {"a": 3}, job_id=job_id
        )
    assert executor.get_result(job_id, timeout=60) == {"total": 2}
    assert executor.delete(job_id) is True
    assert executor.get_status(job_id) == JobState.UNKNOWN
    with pytest.raises(JobNotFoundError):
        executor.get_result(job_id)
    assert executor.submit(AddAction, {"a": 10}, job_id=job_id) == job_id  # the id is free again
    assert executor.wait(job_id, timeout_seconds=60) == "SUCCEEDED"
    assert executor.get_result(job_id) == {"total": 11}
    assert executor.get_status("never-submitted") == JobState.UNKNOWN
    assert executor.cancel("never-submitted") is False


def test_results_expire_after_their_ttl(ray_cluster):
    executor = RayJobExecutor(ray_address=ray_cluster.address, result_ttl=1)
    job = executor.submit(AddAction, {"a": 1}, job_id=_id("ttl"))
    assert executor.wait(job, timeout_seconds=60) == "SUCCEEDED"
    # Waited on, not slept: the record goes once its TTL (1 s) has passed, well within 30 s. A
    # fresh executor per look: none has a local copy of the outcome (an executor caches one).
    state = wait_for(
        lambda: (
            (s := RayJobExecutor(ray_address=ray_cluster.address).get_status(job)) == JobState.UNKNOWN and s
        ),
        30,
        "the record to expire",
    )
    assert state == JobState.UNKNOWN


class _RecordGoesAfterEachLook(RayJobExecutor):
    """Its job's record goes (as at the end of its TTL, or deleted by another process) right
    after each answer of the registry about it."""

    doomed: str | None = None

    def _receive(self, ref, job_id=None, *bound):
        answer = super()._receive(ref, job_id, *bound)
        if job_id is not None and job_id == self.doomed:
            RayJobExecutor(ray_address=self.address).delete(job_id)
        return answer


def test_a_record_that_goes_between_two_looks_is_never_an_error_of_get_status(ray_cluster):
    # CI caught it: get_status read SUCCEEDED, then fetched the outcome, whose record had expired
    # in between, and raised JobNotFoundError. Now one read answers both.
    done = RayJobExecutor(ray_address=ray_cluster.address)
    job = done.submit(AddAction, {"a": 1}, job_id=_id("gone"))
    assert done.wait(job, timeout_seconds=60) == "SUCCEEDED"
    looker = _RecordGoesAfterEachLook(ray_address=ray_cluster.address)
    looker.doomed = job
    assert looker.get_status(job) == JobState.SUCCEEDED  # as read; the record goes right after
    assert looker.get_result(job) == {"total": 2}  # kept from that same read
    assert RayJobExecutor(ray_address=ray_cluster.address).get_status(job) == JobState.UNKNOWN


@pytest.mark.parametrize("mode", MODES)
def test_running_timeout_and_cancel(ray_cluster, mode):
    executor = RayJobExecutor(ray_address=ray_cluster.address, working_dir=WD, mode=mode, num_cpus=0.5)
    job = executor.submit("rdwd_actions.SleepAction", {"seconds": 60})
    assert _wait_state(executor, job, "RUNNING") == JobState.RUNNING
    started = time.monotonic()
    with pytest.raises(ExecutionTimeoutError):
        executor.wait(job, timeout_seconds=0.5)
    assert time.monotonic() - started < 10
    assert executor.cancel(job) is True
    assert _wait_state(executor, job, "STOPPED") == JobState.STOPPED
    with pytest.raises(ExecutionError) as info:
        executor.get_result(job)
    assert info.value.error_type == "TaskCancelledError"
    assert executor.cancel(job) is False  # already ended


def test_infeasible_resources_fail_at_submit(ray_cluster):
    started = time.monotonic()
    with pytest.raises(InfeasibleResourcesError):
        RayJobExecutor(ray_address=ray_cluster.address, num_gpus=1).submit(AddAction, {"a": 1})
    with pytest.raises(InfeasibleResourcesError):
        RayJobExecutor(ray_address=ray_cluster.address, mode="actor", num_cpus=3).submit(AddAction, {"a": 1})
    assert time.monotonic() - started < 10


def test_resources_reach_the_action(ray_cluster):
    executor = RayJobExecutor(ray_address=ray_cluster.address, working_dir=WD, resources={"raydrive_test": 2})
    seen = executor.get_result(executor.submit("rdwd_actions.ResourcesAction", {}), timeout=60)
    assert seen["resources"]["raydrive_test"] == 2.0 and seen["resources"]["CPU"] == 1.0


def _alive_job_actors(cluster) -> int:
    from ray.util.state import list_actors

    alive = list_actors(
        address=cluster.dashboard_url,
        filters=[("class_name", "=", "JobActor"), ("state", "=", "ALIVE")],
        limit=10_000,
    )
    return len(alive)


@pytest.mark.parametrize("mode", MODES)
def test_200_jobs_at_once_all_complete(ray_cluster, mode):
    # Actor mode: 200 actors on 2 CPUs. Each holds 0.01 CPU while it runs, so they never wait for
    # one another's CPU; Ray starts their processes a few at a time, and each is killed when its
    # job ends.
    executor = RayJobExecutor(
        ray_address=ray_cluster.address, mode=mode, **({"num_cpus": 0.01} if mode == "actor" else {})
    )
    jobs = [executor.submit(AddAction, {"a": i, "b": 1000}) for i in range(200)]
    assert len(set(jobs)) == 200
    results = [executor.get_result(job, timeout=240) for job in jobs]
    assert results == [{"total": i + 1000} for i in range(200)]
    assert all(executor.get_status(job) == JobState.SUCCEEDED for job in jobs)
    if mode == "actor":
        wait_for(lambda: _alive_job_actors(ray_cluster) == 0, 30, "every per-job actor to go")
        assert _alive_job_actors(ray_cluster) == 0  # every per-job actor is gone


def _python(code: str, cluster, timeout: float = 120) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, cluster.address],
        cwd=ROOT,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOOKUP = """
import json, sys
from raydrive import DuplicateJobError
from raydrive.drivers.ray_job import RayJobExecutor
executor = RayJobExecutor(ray_address=sys.argv[1])
job_id = {job_id!r}
out = {{"status_before": str(executor.get_status(job_id))}}
out["wait"] = executor.wait(job_id, timeout_seconds=60)
out["result"] = executor.get_result(job_id)
try:
    executor.submit("tests.actions_for_tests.AddAction", {{"a": 1}}, job_id=job_id)
    out["duplicate"] = "accepted"
except DuplicateJobError as exc:
    out["duplicate"] = "refused"
print(json.dumps(out))
"""

SUBMIT_AND_EXIT = """
import json, sys
from raydrive.drivers.ray_job import RayJobExecutor
executor = RayJobExecutor(ray_address=sys.argv[1], working_dir={wd!r}, mode={mode!r}, num_cpus=0.1)
job = executor.submit("rdwd_actions.SleepAction", {{"seconds": 3}}, job_id={job_id!r})
generated = executor.submit("rdwd_actions.WdAddAction", {{"a": 7}})  # batched, sent at exit at the latest
print(json.dumps({{"submitted": job, "generated": generated}}))
"""


@pytest.mark.parametrize("mode", MODES)
def test_jobs_outlive_their_submitter_and_are_found_from_another_process(ray_cluster, mode):
    # Submitted here, read from another process (which also finds the id taken).
    executor = RayJobExecutor(ray_address=ray_cluster.address, working_dir=WD, mode=mode)
    mine = executor.submit("rdwd_actions.SleepAction", {"seconds": 1}, job_id=_id(f"here-{mode}"))
    seen = _python(LOOKUP.format(job_id=mine), ray_cluster)
    assert seen["status_before"] in ("PENDING", "RUNNING", "SUCCEEDED")
    assert seen["wait"] == "SUCCEEDED" and seen["result"]["slept"] == 1
    assert seen["duplicate"] == "refused"

    # Submitted by a process that exits at once; the job runs on and its result is here.
    theirs = _id(f"there-{mode}")
    out = _python(SUBMIT_AND_EXIT.format(wd=str(WD), mode=mode, job_id=theirs), ray_cluster)
    assert out["submitted"] == theirs
    assert executor.get_status(theirs) in (JobState.PENDING, JobState.RUNNING)
    assert executor.get_result(theirs, timeout=60)["slept"] == 3
    assert executor.get_result(out["generated"], timeout=60) == {"total": 8}
