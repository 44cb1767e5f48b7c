"""ray-job's job registry under its own death, on the session's real local Ray cluster.

The registry is killed the two ways it dies in practice: its process is SIGKILLed (a crash or the
OOM killer: Ray restarts the actor) and it is killed for good (``ray.kill``: the next client
starts a fresh one). Either way every job it had accepted must come back: finished outcomes kept,
queued jobs run, running jobs failed with a cause naming the registry's death (or re-run where
their retry policy allows), a waiting ``get_result`` ended at once with a clear error.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from raydrive import ExecutionError, JobState
from tests.actions_job_policy import FailTimesAction, RecordAction
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

SLOW = {"initial": 3600.0, "max": 3600.0, "factor": 1.0, "jitter": 0.0}  # a retry that waits an hour


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _executor(cluster, **options):
    from raydrive import get_executor

    return get_executor("ray-job", ray_address=cluster.address, num_cpus=0.1, **options)


def _alive_registries(cluster) -> list:
    from ray.util.state import list_actors

    filters = [("class_name", "=", "JobRegistry"), ("state", "=", "ALIVE")]
    return list_actors(address=cluster.dashboard_url, filters=filters)


def _registry_pid(cluster) -> int:
    alive = _alive_registries(cluster)
    assert len(alive) == 1, alive
    return int(alive[0].pid)


def _registry_alive_again(cluster, old_pid: int) -> bool:
    try:
        return _registry_pid(cluster) != old_pid
    except AssertionError:
        return False


def _scene(cluster, tmp_path: Path) -> dict:
    """Jobs in every state the registry holds: finished, running, queued, waiting a retry."""
    queue = _id("q")
    gate = tmp_path / "gate"
    ex = _executor(cluster, queue=queue, max_concurrent=1)
    done = ex.submit(RecordAction, {"dir": str(tmp_path), "name": "done"}, job_id=_id("done"))
    assert ex.get_result(done, timeout=120)["name"] == "done"
    running = ex.submit(
        RecordAction, {"dir": str(tmp_path), "name": "running", "gate": str(gate)}, job_id=_id("running")
    )
    queued = ex.submit(RecordAction, {"dir": str(tmp_path), "name": "queued"}, job_id=_id("queued"))
    wait_for(lambda: (tmp_path / "starts").exists(), 120, "the running job to start")
    retry_dir = tmp_path / "retry"
    retry_dir.mkdir()
    retrying = _executor(cluster, retries=1, retry_on="any", retry_backoff=SLOW)
    backoff = retrying.submit(FailTimesAction, {"dir": str(retry_dir)}, job_id=_id("backoff"))
    wait_for(
        lambda: (
            len(retrying.get_attempts(backoff)) == 1 and retrying.get_attempts(backoff)[0].state == "FAILED"
        ),
        120,
        "the retried job's first attempt to fail",
    )
    return {
        "ex": ex,
        "gate": gate,
        "done": done,
        "running": running,
        "queued": queued,
        "backoff": backoff,
        "retry_dir": retry_dir,
    }


def _check_recovered(cluster, tmp_path: Path, s: dict) -> None:
    fresh = _executor(cluster)  # nothing cached: every answer comes from the registry
    # Finished: kept, result and all.
    assert fresh.get_status(s["done"]) == JobState.SUCCEEDED
    assert fresh.get_result(s["done"], timeout=60)["name"] == "done"
    # Running when the registry died: failed, naming the cause (its retry policy allows none).
    assert wait_for(lambda: fresh.get_status(s["running"]) == JobState.FAILED, 120, "running -> FAILED")
    with pytest.raises(ExecutionError, match="registry") as info:
        fresh.get_result(s["running"], timeout=10)
    assert info.value.error_type == "OwnerDiedError"
    # Queued: runs now.
    assert fresh.get_result(s["queued"], timeout=120)["name"] == "queued"
    # Waiting out a retry's backoff: still there, still waiting (its policy allows one more try).
    assert fresh.get_status(s["backoff"]) == JobState.PENDING
    assert [a.state for a in fresh.get_attempts(s["backoff"])][:1] == ["FAILED"]
    assert fresh.cancel(s["backoff"]) is True
    # New submissions work.
    new = fresh.submit(RecordAction, {"dir": str(tmp_path), "name": "new"}, job_id=_id("new"))
    assert fresh.get_result(new, timeout=120)["name"] == "new"


def test_registry_crash_keeps_every_accepted_job(ray_cluster, tmp_path):
    s = _scene(ray_cluster, tmp_path)
    ex = s["ex"]
    waiting: dict = {}

    def wait_running() -> None:
        started = time.monotonic()
        try:
            ex.get_result(s["running"], timeout=300)
        except Exception as exc:  # the test looks at what it was
            waiting["error"] = exc
        waiting["took"] = time.monotonic() - started

    waiter = threading.Thread(target=wait_running)
    waiter.start()
    pid = _registry_pid(ray_cluster)
    os.kill(pid, signal.SIGKILL)  # a crash: Ray restarts the registry
    waiter.join(timeout=120)
    assert not waiter.is_alive()
    # The waiting get_result ended at once with an error that says what happened.
    assert isinstance(waiting.get("error"), ExecutionError) and "registry" in str(waiting["error"])
    assert waiting["took"] < 60
    wait_for(lambda: _registry_alive_again(ray_cluster, pid), 120, "Ray to restart the registry")
    s["gate"].write_text("open")
    _check_recovered(ray_cluster, tmp_path, s)
    # The running job's action was stopped with its owner: it never finished.
    assert not (tmp_path / "running.json").exists()


def test_registry_killed_for_good_is_replaced_with_its_records(ray_cluster, tmp_path):
    import ray

    from raydrive.drivers.ray.wire import NAMESPACE
    from raydrive.drivers.ray_job.wire import REGISTRY_NAME

    s = _scene(ray_cluster, tmp_path)
    assert _registry_pid(ray_cluster)
    ray.kill(ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE), no_restart=True)
    wait_for(lambda: _no_registry(ray_cluster), 120, "the registry to be gone")
    # The next client call starts a fresh registry, which finds the records of the dead one.
    s["gate"].write_text("open")
    _check_recovered(ray_cluster, tmp_path, s)


def _no_registry(cluster) -> bool:
    return not _alive_registries(cluster)
