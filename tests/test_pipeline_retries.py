"""ray-pipeline retries in place and deadlines, on the session's real Ray cluster and a real service.

The actions (tests/actions_pipeline_retries.py) leave files behind: how often an action ran, when
each attempt started. Runs are waited on through the service (conditions, never sleeps).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import raydrive
from raydrive import ExecutionError, PipelineDefinition
from raydrive.core.errors import ExecutionTimeoutError
from raydrive.core.pipeline import ActionStatus, RunStatus
from raydrive.core.retry import DEADLINE_EXCEEDED
from raydrive.service.server import ServiceServer
from tests.conditions import wait_for
from tests.plugin_dirs import plugin_module_dir

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent
MODULE = "rd_pipeline_retry_actions"


def actions(*names: str) -> list[str]:
    return [f"{MODULE}.{n}" for n in names]


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    with plugin_module_dir(tmp_path_factory, HERE / "actions_pipeline_retries.py", MODULE) as root:
        yield root


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceServer(db=tmp_path_factory.mktemp("svc") / "runs.db") as server:
        yield server


def _executor(ray_cluster, service, plugin_dir, **options):
    return raydrive.get_executor(
        "ray-pipeline",
        ray_address=ray_cluster.address,
        working_dir=plugin_dir,
        pipeline_service_url=service.url,
        progress_interval=0.05,
        cancel_poll_interval=0.2,
        **options,
    )


@pytest.fixture(scope="module")
def executor(ray_cluster, service, plugin_dir):
    with _executor(ray_cluster, service, plugin_dir) as ex:
        yield ex


def test_actor_killed_mid_action_2_continues_in_the_same_run(ray_cluster, service, plugin_dir, tmp_path):
    count, marker = tmp_path / "count", tmp_path / "crashed"
    backoff = {"initial": 0.1, "max": 1.0, "factor": 2.0, "jitter": 0.0}
    with _executor(ray_cluster, service, plugin_dir, retries=1, retry_backoff=backoff) as ex:
        run_id = ex.submit(
            PipelineDefinition("crash", actions("CountAction", "CrashOnceAction")),
            {"count_file": str(count), "crash_marker": str(marker)},
        )
        final = ex.wait(run_id, timeout_seconds=180, poll_interval=0.5)
        assert final.status == RunStatus.COMPLETED and final.run_id == run_id
        assert marker.exists()  # the first attempt did die in action 2
        assert len(count.read_text().splitlines()) == 1  # action 1 ran exactly once
        assert [a.status for a in final.progress] == [ActionStatus.COMPLETED, ActionStatus.COMPLETED]
        assert final.attempt == 2
        assert ex.get_result(run_id)["survived"] is True
        attempts = ex.get_attempts(run_id)
        assert [(a.number, a.state) for a in attempts] == [(1, "FAILED"), (2, "SUCCEEDED")]
        assert attempts[0].error_type == "ActorDiedError"
        run = ex.client.get_run(run_id)
        assert (run.attempt, run.max_attempts) == (2, 2)
        assert [c.action_name for c in ex.client.list_checkpoints(run_id)] == [
            "CountAction",
            "CrashOnceAction",
        ]


def test_without_retries_a_dead_actor_fails_the_run(executor, tmp_path):
    run_id = executor.submit(
        PipelineDefinition("crash-once", actions("CountAction", "CrashOnceAction")),
        {"count_file": str(tmp_path / "count"), "crash_marker": str(tmp_path / "crashed")},
    )
    with pytest.raises(ExecutionError, match="actor died"):
        executor.wait(run_id, timeout_seconds=120, poll_interval=0.5)
    assert executor.client.get_run(run_id).max_attempts == 1


def test_an_action_exception_is_not_retried_by_default(executor, tmp_path):
    tries = tmp_path / "tries"
    run_id = executor.submit(PipelineDefinition("flaky", actions("FlakyAction")), {"tries_file": str(tries)})
    with pytest.raises(ExecutionError, match="flaky failure 1"):
        executor.wait(run_id, timeout_seconds=120, poll_interval=0.5)
    assert len(tries.read_text().splitlines()) == 1


def test_an_action_exception_is_retried_per_the_actions_policy_with_backoff(executor, tmp_path):
    tries = tmp_path / "tries"
    run_id = executor.submit(
        PipelineDefinition("patient", actions("PatientFlakyAction")),
        {"tries_file": str(tries), "fail_times": 2},
    )
    final = executor.wait(run_id, timeout_seconds=120, poll_interval=0.5)
    assert final.status == RunStatus.COMPLETED and executor.get_result(run_id) == {"tries": 3}
    starts = [float(line) for line in tries.read_text().splitlines()]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.3 and starts[2] - starts[1] >= 0.6  # the backoff, at least
    logs = [entry.message for entry in executor.client.list_logs(run_id)]
    assert any("attempt 2 of 3" in line for line in logs) and any("attempt 3 of 3" in line for line in logs)
    assert final.attempt == 1  # retried in place: the actor never restarted


def test_options_win_over_the_class_policy(ray_cluster, service, plugin_dir, tmp_path):
    tries = tmp_path / "tries"
    with _executor(ray_cluster, service, plugin_dir, retries=1, retry_on="any") as ex:
        run_id = ex.submit(
            PipelineDefinition("flaky-any", actions("FlakyAction")), {"tries_file": str(tries)}
        )
        assert ex.get_result(run_id, timeout=120) == {"tries": 2}
    tries.unlink()
    with _executor(ray_cluster, service, plugin_dir, retries=0) as ex:  # 0 retries wins over 2
        run_id = ex.submit(
            PipelineDefinition("patient-0", actions("PatientFlakyAction")), {"tries_file": str(tries)}
        )
        with pytest.raises(ExecutionError, match="flaky failure 1"):
            ex.wait(run_id, timeout_seconds=120, poll_interval=0.5)


def test_deadlines_are_enforced_on_the_cluster_with_the_submitter_gone(
    executor, service, ray_cluster, plugin_dir, tmp_path
):
    started = tmp_path / "started"
    code = (
        "import os, sys\n"
        "os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'\n"
        f"sys.path.insert(0, {str(plugin_dir)!r})\n"
        "import raydrive\n"
        f"ex = raydrive.get_executor('ray-pipeline', ray_address={ray_cluster.address!r}, "
        f"working_dir={str(plugin_dir)!r}, pipeline_service_url={service.url!r}, cancel_poll_interval=0.2)\n"
        f"own = ex.submit({actions('TimedSleepAction')!r}, {{'started_file': {str(started)!r}}}, "
        "name='own')\n"
        f"run = ex.submit({actions('CountAction', 'SleepAction')!r}, "
        f"{{'count_file': {str(tmp_path / 'count')!r}}}, name='whole', timeout_s=4)\n"
        "print(own, run, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    own, whole = out.stdout.split()[-2:]
    for run_id, where in ((own, "TimedSleepAction"), (whole, "SleepAction")):
        wait_for(
            lambda run_id=run_id: executor.get_status(run_id).is_terminal(),
            timeout=120,
            what=f"run {run_id} to pass its deadline",
        )
        progress = executor.get_progress(run_id)
        assert progress.status == RunStatus.FAILED and progress.error.startswith(DEADLINE_EXCEEDED), (
            progress.error
        )
        assert progress.action(where).status == ActionStatus.FAILED
        with pytest.raises(ExecutionTimeoutError) as info:
            executor.wait(run_id, timeout_seconds=10)
        assert info.value.reason == DEADLINE_EXCEEDED
    assert "2 s" in executor.get_progress(own).error
    assert "the run" in executor.get_progress(whole).error
    assert executor.get_progress(whole).action("CountAction").status == ActionStatus.COMPLETED


def test_bad_deadlines_are_refused_at_submit(ray_cluster, service, plugin_dir, executor):
    with pytest.raises(raydrive.InvalidOptionsError, match="timeout_s"):
        executor.submit(actions("SleepAction"), {}, name="neg", timeout_s=-1)
    with (
        _executor(ray_cluster, service, plugin_dir, action_timeouts={"Nope": 1.0}) as ex,
        pytest.raises(raydrive.SubmissionError, match="Nope"),
    ):
        ex.submit(actions("SleepAction"), {}, name="unknown")
