"""ray-job's job queue (max_concurrent, priority, cancel while queued) on the real local cluster.

Each test uses a queue name of its own: the registry, and so every queue, is shared by the whole
test session. The actions (tests/actions_job_policy.py) record their start and end in files;
concurrency and order are read from those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from raydrive import ExecutionError, JobState
from raydrive.drivers.ray_job import RayJobExecutor
from tests.actions_job_policy import RecordAction
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


def _queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def _executor(cluster, queue: str, limit: int, **options) -> RayJobExecutor:
    # num_cpus=0.1: Ray alone would run 20 at once on the 2-CPU cluster; the queue is what limits.
    return RayJobExecutor(
        ray_address=cluster.address, queue=queue, max_concurrent=limit, num_cpus=0.1, **options
    )


def _record(
    executor: RayJobExecutor, tmp_path: Path, name: str, *, gate: Path | None = None, **options
) -> str:
    """Submit a RecordAction named ``name`` (held until ``gate`` exists, when given)."""
    params = {"dir": str(tmp_path), "name": name, **({"gate": str(gate)} if gate else {})}
    return executor.submit(RecordAction, params, **options)


def _queue_info(executor: RayJobExecutor, queue: str) -> dict:
    return executor._call("queues").get(queue, {})


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals]
    )  # end before start on ties
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_50_jobs_never_more_than_max_concurrent_at_once(ray_cluster, tmp_path):
    queue = _queue()
    executor = _executor(ray_cluster, queue, 2)
    jobs = [
        executor.submit(RecordAction, {"dir": str(tmp_path), "name": f"j{i}", "seconds": 0.05})
        for i in range(50)
    ]
    # Well before they are done, the registry holds the rest back (no Ray task for them).
    info = wait_for(lambda: _queue_info(executor, queue), what="the queue to exist")
    assert info["limit"] == 2 and info["running"] <= 2
    results = [executor.get_result(job, timeout=240) for job in jobs]
    assert [r["name"] for r in results] == [f"j{i}" for i in range(50)]
    assert all(executor.get_status(job) == JobState.SUCCEEDED for job in jobs)
    intervals = []
    for i in range(50):
        record = json.loads((tmp_path / f"j{i}.json").read_text())
        intervals.append((record["start"], record["end"]))
    assert _max_overlap(intervals) <= 2
    assert len((tmp_path / "starts").read_text().splitlines()) == 50  # each ran exactly once
    assert _queue_info(executor, queue) == {"limit": 2, "running": 0, "queued": 0}


def test_priority_first_then_fifo(ray_cluster, tmp_path):
    queue = _queue()
    gate = tmp_path / "gate"
    executor = _executor(ray_cluster, queue, 1)
    blocker = _record(executor, tmp_path, "blocker", gate=gate)
    wait_for(lambda: executor.get_status(blocker) == JobState.RUNNING, 60, "the blocker to hold the slot")
    order = [("low1", 0), ("high1", 5), ("low2", 0), ("mid1", 2), ("high2", 5), ("low3", -1)]
    jobs = [_record(executor, tmp_path, name, priority=priority) for name, priority in order]
    wait_for(lambda: _queue_info(executor, queue).get("queued") == 6, 60, "six jobs queued")
    assert all(executor.get_status(job) == JobState.PENDING for job in jobs)
    gate.write_text("go")
    for job in [blocker, *jobs]:
        executor.get_result(job, timeout=120)
    started = [line.split()[0] for line in (tmp_path / "starts").read_text().splitlines()]
    assert started == ["blocker", "high1", "high2", "mid1", "low1", "low2", "low3"]


def test_a_queued_job_cancelled_never_runs(ray_cluster, tmp_path):
    queue = _queue()
    gate = tmp_path / "gate"
    executor = _executor(ray_cluster, queue, 1)
    blocker = _record(executor, tmp_path, "blocker", gate=gate)
    queued = _record(executor, tmp_path, "cancelled")
    after = _record(executor, tmp_path, "after")
    wait_for(lambda: _queue_info(executor, queue).get("queued") == 2, 60, "two jobs queued")
    assert executor.get_status(queued) == JobState.PENDING
    assert executor.get_attempts(queued) == []
    assert executor.cancel(queued) is True
    assert executor.get_status(queued) == JobState.STOPPED  # at once: it never started
    assert executor.cancel(queued) is False
    assert _queue_info(executor, queue)["queued"] == 1
    gate.write_text("go")
    assert executor.get_result(after, timeout=120)["name"] == "after"  # the queue went past it
    executor.get_result(blocker, timeout=120)
    with pytest.raises(ExecutionError) as info:
        executor.get_result(queued)
    assert info.value.error_type == "TaskCancelledError"
    assert executor.get_attempts(queued) == []
    assert not (tmp_path / "cancelled.json").exists()
    assert "cancelled" not in (tmp_path / "starts").read_text()


HOLD_THE_SLOT_AND_EXIT = """
import json, sys
from raydrive.drivers.ray_job import RayJobExecutor
executor = RayJobExecutor(ray_address=sys.argv[1], queue={queue!r}, max_concurrent=1, num_cpus=0.1)
job = executor.submit("tests.actions_job_policy.RecordAction",
                      {{"dir": {dir!r}, "name": "theirs", "gate": {gate!r}}}, job_id={job_id!r})
print(json.dumps({{"submitted": job}}))
"""


def test_the_limit_is_shared_by_every_submitting_process(ray_cluster, tmp_path):
    queue, gate, theirs = _queue(), tmp_path / "gate", f"theirs-{uuid.uuid4().hex[:8]}"
    code = HOLD_THE_SLOT_AND_EXIT.format(queue=queue, dir=str(tmp_path), gate=str(gate), job_id=theirs)
    proc = subprocess.run(
        [sys.executable, "-c", code, ray_cluster.address],
        cwd=ROOT,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    executor = _executor(ray_cluster, queue, 1)
    mine = _record(executor, tmp_path, "mine")
    wait_for(lambda: executor.get_status(theirs) == JobState.RUNNING, 60, "their job to run")
    assert executor.get_status(mine) == JobState.PENDING  # their job, gone submitter, holds the slot
    gate.write_text("go")
    assert executor.get_result(mine, timeout=120)["name"] == "mine"
    assert executor.get_status(theirs) == JobState.SUCCEEDED
    started = [line.split()[0] for line in (tmp_path / "starts").read_text().splitlines()]
    assert started == ["theirs", "mine"]


# --- collecting outcomes: `gather` (how a batch is fetched in a few registry calls) -----------
def test_a_finished_jobs_result_is_not_held_back_by_a_running_one(ray_cluster, tmp_path):
    # The registry waits a little for the executor's other jobs once the asked-for one ended
    # (gather); a job that runs on must not keep the ended one's result from its caller.
    queue = _queue()
    gate = tmp_path / "gate"
    executor = _executor(ray_cluster, queue, 2)
    blocker = _record(executor, tmp_path, "blocker", gate=gate)
    quick = _record(executor, tmp_path, "quick")
    assert executor.get_result(quick, timeout=60)["name"] == "quick"
    assert executor.get_status(blocker) in (JobState.PENDING, JobState.RUNNING)
    gate.write_text("go")
    assert executor.get_result(blocker, timeout=60)["name"] == "blocker"


def test_jobs_that_end_while_an_outcome_call_gathers_come_back_with_it(ray_cluster, tmp_path):
    import ray

    queue = _queue()
    gate = tmp_path / "gate"
    executor = _executor(ray_cluster, queue, 1)
    blocker = _record(executor, tmp_path, "blocker", gate=gate)
    asked, b, c = (_record(executor, tmp_path, n) for n in "abc")
    executor.cancel(asked)  # queued: it ends at once, as STOPPED
    registry = executor._registry_handle()
    # Wait for two of [b, c] to end, at most the registry's longest gather (1 s), however long
    # none of them ends meanwhile.
    call = registry.outcome.remote(asked, 30, [b, c], (2, 1.0, 1.0))
    assert executor.cancel(b) is True and executor.cancel(c) is True  # while the call waits
    found = ray.get(call, timeout=60)
    assert {job: found[job][0] for job in (asked, b, c)} == dict.fromkeys((asked, b, c), "STOPPED")
    # A gather is bounded: asking with the blocker among the others returns (after <= 1 s).
    found = ray.get(registry.outcome.remote(asked, 30, [blocker], (1, 1.0, 1.0)), timeout=60)
    assert set(found) == {asked}
    gate.write_text("go")
    assert executor.get_result(blocker, timeout=60)["name"] == "blocker"
