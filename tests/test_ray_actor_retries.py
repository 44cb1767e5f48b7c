"""ray-actor retries and deadlines on the session's real local Ray cluster.

The actions record what happened (pids, timestamps, attempt counts) in files under tmp_path: they
prove ordering, backoff and fresh actors; no timing is asserted beyond "at least the backoff".
"""

from __future__ import annotations

import builtins
import os
import signal
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from raydrive import BaseAction, ExecutionError, JobEvent, hookimpl
from raydrive.core.errors import ActorDiedError, ExecutionTimeoutError, InvalidOptionsError, JobNotFoundError
from raydrive.core.retry import DEADLINE_EXCEEDED, Attempt
from raydrive.drivers.ray_actor import RayActorExecutor
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

NO_WAIT = {"initial": 0.0, "jitter": 0.0}


class DirParams(BaseModel):
    dir: str
    fail_times: int = 0
    error: str = "ValueError"


def _record(directory: str) -> int:
    """Append this call's pid and time to ``calls``; return how many calls there were."""
    path = Path(directory) / "calls"
    with path.open("a") as f:
        f.write(f"{os.getpid()} {time.time()!r}\n")
    return len(path.read_text().splitlines())


def _calls(directory: Path) -> list[tuple[int, float]]:
    lines = (directory / "calls").read_text().splitlines()
    return [(int(pid), float(at)) for pid, at in (line.split() for line in lines)]


class KillOnceAction(BaseAction[DirParams]):
    """SIGKILLs its own process on the first call (marker file), succeeds on the next."""

    def execute(self) -> dict:
        _record(self.params.dir)
        marker = Path(self.params.dir) / "killed"
        if not marker.exists():
            marker.write_text("1")
            os.kill(os.getpid(), signal.SIGKILL)
        return {"pid": os.getpid()}


class FlakyAction(BaseAction[DirParams]):
    """Raises ``error`` (a builtin exception type's name) on its first ``fail_times`` calls."""

    def execute(self) -> dict:
        count = _record(self.params.dir)
        if count <= self.params.fail_times:
            raise getattr(builtins, self.params.error)(f"call {count} fails")
        return {"calls": count, "pid": os.getpid()}


class DeclaredRetriesAction(FlakyAction):
    """Declares its own policy: two retries of anything."""

    retries = 2
    retry_on = "any"
    retry_backoff = NO_WAIT


class SleepParams(BaseModel):
    dir: str
    seconds: float = 600


class SleepAction(BaseAction[SleepParams]):
    """Records its pid, then sleeps (the deadline must interrupt it)."""

    def execute(self) -> dict:
        _record(self.params.dir)
        time.sleep(self.params.seconds)
        return {"slept": self.params.seconds}


class PidAction(BaseAction[DirParams]):
    def execute(self) -> dict:
        return {"pid": os.getpid()}


@pytest.fixture
def recorder(plugin_manager):
    events: list[tuple[str, JobEvent]] = []

    class Recorder:
        @hookimpl
        def raydrive_job_submitted(self, event: JobEvent) -> None:
            events.append(("submitted", event))

        @hookimpl
        def raydrive_job_finished(self, event: JobEvent) -> None:
            events.append(("finished", event))

    plugin_manager.register(Recorder(), name="retry-recorder")
    return events


def _executor(cluster, **options) -> RayActorExecutor:
    return RayActorExecutor(ray_address=cluster.address, **options)


def test_killed_actor_is_retried_on_a_fresh_actor(ray_cluster, tmp_path, recorder):
    with _executor(ray_cluster, retries=1, retry_backoff=NO_WAIT) as executor:
        result = executor.execute(KillOnceAction, {"dir": str(tmp_path)}, job_id="kill-once")
        (first_pid, _), (second_pid, _) = _calls(tmp_path)
        assert result == {"pid": second_pid} and second_pid != first_pid  # a fresh actor
        attempts = executor.get_attempts("kill-once")
        assert [a.state for a in attempts] == ["FAILED", "SUCCEEDED"]
        assert attempts[0].error_type in {"ActorDiedError", "RayActorError"} or "died" in attempts[0].error
        # One job: submitted once, finished once with the attempt that ended it.
        assert [(kind, e.job_id) for kind, e in recorder] == [
            ("submitted", "kill-once"),
            ("finished", "kill-once"),
        ]
        assert recorder[1][1].status == "SUCCEEDED" and recorder[1][1].attempt == 2


def test_killed_actor_without_retries_fails_with_its_attempts(ray_cluster, tmp_path, recorder):
    with _executor(ray_cluster) as executor:
        with pytest.raises(ActorDiedError) as info:
            executor.execute(KillOnceAction, {"dir": str(tmp_path)}, job_id="kill-no-retry")
        assert [a.number for a in info.value.attempts] == [1]
        assert isinstance(info.value.attempts[0], Attempt) and info.value.attempts[0].state == "FAILED"
        assert recorder[-1][1].status == "FAILED" and recorder[-1][1].attempt == 1
        assert len(_calls(tmp_path)) == 1


def test_action_exception_is_not_retried_by_default(ray_cluster, tmp_path):
    with _executor(ray_cluster, retries=3, retry_backoff=NO_WAIT) as executor:
        with pytest.raises(ExecutionError) as info:
            executor.execute(FlakyAction, {"dir": str(tmp_path), "fail_times": 1})
        assert info.value.error_type == "ValueError"
        assert len(info.value.attempts) == 1 and len(_calls(tmp_path)) == 1


def test_action_exception_is_retried_with_retry_on_any(ray_cluster, tmp_path, recorder):
    with _executor(ray_cluster, retries=2, retry_on="any", retry_backoff=NO_WAIT) as executor:
        result = executor.execute(FlakyAction, {"dir": str(tmp_path), "fail_times": 2}, job_id="flaky")
        assert result["calls"] == 3
        attempts = executor.get_attempts("flaky")
        assert [a.state for a in attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
        assert attempts[0].error_type == "ValueError" and "call 1 fails" in attempts[0].error
        assert len({pid for pid, _ in _calls(tmp_path)}) == 1  # the live actor was kept
        assert [kind for kind, _ in recorder] == ["submitted", "finished"] and recorder[1][1].attempt == 3


def test_retries_run_out_and_the_last_error_is_raised(ray_cluster, tmp_path):
    with _executor(ray_cluster, retries=1, retry_on="any", retry_backoff=NO_WAIT) as executor:
        with pytest.raises(ExecutionError) as info:
            executor.execute(FlakyAction, {"dir": str(tmp_path), "fail_times": 5})
        assert "call 2 fails" in str(info.value)  # the last attempt's error
        assert [a.number for a in info.value.attempts] == [1, 2]


def test_retry_on_a_list_of_type_names(ray_cluster, tmp_path):
    with _executor(ray_cluster, retries=2, retry_on=["OSError"], retry_backoff=NO_WAIT) as executor:
        os_dir, value_dir = tmp_path / "os", tmp_path / "value"
        os_dir.mkdir(), value_dir.mkdir()
        assert (
            executor.execute(FlakyAction, {"dir": str(os_dir), "fail_times": 1, "error": "OSError"})["calls"]
            == 2
        )
        with pytest.raises(ExecutionError) as info:
            executor.execute(FlakyAction, {"dir": str(value_dir), "fail_times": 1, "error": "ValueError"})
        assert info.value.error_type == "ValueError" and len(info.value.attempts) == 1


def test_backoff_is_honoured(ray_cluster, tmp_path):
    backoff = {"initial": 1.0, "factor": 2.0, "jitter": 0.0}
    with _executor(ray_cluster, retries=2, retry_on="any", retry_backoff=backoff) as executor:
        executor.execute(FlakyAction, {"dir": str(tmp_path), "fail_times": 2})
    (_, t1), (_, t2), (_, t3) = _calls(tmp_path)
    print(f"gaps between attempts: {t2 - t1:.3f} s, {t3 - t2:.3f} s")
    assert t2 - t1 >= 1.0 and t3 - t2 >= 2.0  # lower bounds only


def test_class_declared_policy_and_options_winning(ray_cluster, tmp_path):
    declared, overridden = tmp_path / "declared", tmp_path / "overridden"
    declared.mkdir(), overridden.mkdir()
    with _executor(ray_cluster) as executor:
        assert executor.execute(DeclaredRetriesAction, {"dir": str(declared), "fail_times": 2})["calls"] == 3
    with _executor(ray_cluster, retries=0) as executor:
        with pytest.raises(ExecutionError) as info:
            executor.execute(DeclaredRetriesAction, {"dir": str(overridden), "fail_times": 2})
        assert len(info.value.attempts) == 1 and len(_calls(overridden)) == 1


def test_deadline_interrupts_the_action_and_the_next_call_gets_a_fresh_actor(ray_cluster, tmp_path, recorder):
    with _executor(ray_cluster, retries=2, retry_backoff=NO_WAIT) as executor:
        before = executor.execute(PidAction, {"dir": str(tmp_path)})["pid"]
        with pytest.raises(ExecutionTimeoutError) as info:
            executor.execute(SleepAction, {"dir": str(tmp_path)}, timeout_s=2, job_id="sleepy")
        assert info.value.reason == DEADLINE_EXCEEDED and info.value.job_id == "sleepy"
        assert len(info.value.attempts) == 1  # a deadline is not retried by default
        assert recorder[-1][1].status == "FAILED" and recorder[-1][1].attempt == 1
        ((sleeper, _),) = _calls(tmp_path)
        assert sleeper == before
        wait_for(lambda: not _alive(sleeper), timeout=60, what="the sleeping actor's process to be killed")
        after = executor.execute(PidAction, {"dir": str(tmp_path)})["pid"]
        assert after != before


def test_deadline_option_and_retry_on_naming_it(ray_cluster, tmp_path):
    with _executor(
        ray_cluster, timeout_s=3, retries=1, retry_on=["ExecutionTimeoutError"], retry_backoff=NO_WAIT
    ) as executor:
        with pytest.raises(ExecutionTimeoutError) as info:
            executor.execute(SleepAction, {"dir": str(tmp_path)})
        assert [a.error_type for a in info.value.attempts] == ["ExecutionTimeoutError"] * 2
        pids = [pid for pid, _ in _calls(tmp_path)]
        assert len(pids) == 2 and pids[0] != pids[1]  # each attempt on a fresh actor
        # The per-call argument wins over the option.
        assert executor.execute(SleepAction, {"dir": str(tmp_path), "seconds": 0}, timeout_s=120) == {
            "slept": 0
        }


def test_bad_timeout_and_unknown_job(ray_cluster):
    executor = _executor(ray_cluster)
    with pytest.raises(InvalidOptionsError):
        executor.execute(PidAction, {"dir": "."}, timeout_s=0)
    with pytest.raises(InvalidOptionsError):
        executor.execute(PidAction, {"dir": "."}, timeout_s="soon")
    with pytest.raises(JobNotFoundError):
        executor.get_attempts("never-ran")
    assert executor.actor_name is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
