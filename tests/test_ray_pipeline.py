"""ray-pipeline on the session's real Ray cluster, reporting to a real service on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import raydrive
from raydrive import ExecutionError, JobNotFoundError, PipelineDefinition, ServiceUnavailableError
from raydrive.core.pipeline import ActionStatus, RunStatus
from raydrive.service.server import ServiceServer
from tests.plugin_dirs import plugin_module_dir
from tests.test_pipeline_runner import wait_for

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent
MODULE = "rd_pipeline_actions"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A plugin working dir holding the pipeline actions, importable here and in the actor."""
    with plugin_module_dir(tmp_path_factory, HERE / "actions_pipeline.py", MODULE) as root:
        yield root


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceServer(db=tmp_path_factory.mktemp("svc") / "runs.db") as server:
        yield server


@pytest.fixture(scope="module")
def executor(ray_cluster, service, plugin_dir):
    with raydrive.get_executor(
        "ray-pipeline",
        ray_address=ray_cluster.address,
        working_dir=plugin_dir,
        pipeline_service_url=service.url,
        progress_interval=0.05,
    ) as ex:
        yield ex


def actions(*names):
    return [f"{MODULE}.{n}" for n in names]


THREE = PipelineDefinition(
    name="etl", actions=actions("LoadAction", "ScaleAction", "SumAction"), description="three steps"
)


def test_three_actions_end_to_end_with_params_flowing(executor):
    run_id = executor.submit(THREE, {"source": "s3://bucket/data", "rows": 4})
    final = executor.wait(run_id, timeout_seconds=120, poll_interval=1.0)
    assert final.status == RunStatus.COMPLETED
    assert final.overall_progress == 1.0
    assert [a.status for a in final.progress] == [ActionStatus.COMPLETED] * 3
    result = executor.get_result(run_id)
    assert result["total"] == 60 and result["pid"] != os.getpid()
    checkpoints = executor.client.list_checkpoints(run_id)
    assert [c.action_name for c in checkpoints] == ["LoadAction", "ScaleAction", "SumAction"]
    assert checkpoints[-1].params_snapshot["scaled"] == [0, 10, 20, 30]
    logs = executor.client.list_logs(run_id)
    assert any("loading 4 rows from s3://bucket/data" in entry.message for entry in logs)
    assert executor.get_status(run_id) == RunStatus.COMPLETED


def test_plain_list_needs_a_name_and_validates_first_params_locally(executor):
    with pytest.raises(raydrive.SubmissionError, match="name="):
        executor.submit(actions("LoadAction"), {"source": "x"})
    with pytest.raises(raydrive.ValidationError, match="source"):
        executor.submit(actions("LoadAction"), {"rows": 2}, name="quick")


def test_stream_progress_sees_every_state_change_in_order(executor):
    run_id = executor.submit(THREE, {"source": "x", "rows": 2, "sleep": 0.5})
    seen = list(executor.stream_progress(run_id, timeout=120))
    assert seen[-1].status == RunStatus.COMPLETED
    statuses = [p.status for p in seen]
    assert statuses.index(RunStatus.RUNNING) < statuses.index(RunStatus.COMPLETED)
    order = {"pending": 0, "running": 1, "completed": 2}
    for i in range(3):  # every action moves forward only
        steps = [order[p.progress[i].status.value] for p in seen]
        assert steps == sorted(steps) and steps[-1] == 2
    scale = [p.progress[1].progress for p in seen if p.progress[1].status == ActionStatus.RUNNING]
    assert len(scale) >= 2 and scale == sorted(scale)  # progress reports arrived, in order


def test_failure_then_resume_skips_completed_actions(executor, tmp_path):
    marker = tmp_path / "fail-now"
    marker.write_text("x")
    params = {"source": "db", "rows": 3, "fail_marker": str(marker)}
    failed_run = executor.submit(THREE, params)
    with pytest.raises(ExecutionError) as info:
        executor.wait(failed_run, timeout_seconds=120, poll_interval=1.0)
    assert "ScaleAction" in str(info.value) and "marker present" in str(info.value)
    progress = executor.get_progress(failed_run)
    assert progress.status == RunStatus.FAILED
    assert [a.status for a in progress.progress] == [
        ActionStatus.COMPLETED,
        ActionStatus.FAILED,
        ActionStatus.PENDING,
    ]
    marker.unlink()
    resumed = executor.submit(THREE, params, resume_from=failed_run)
    final = executor.wait(resumed, timeout_seconds=120, poll_interval=1.0)
    assert [a.status for a in final.progress] == [
        ActionStatus.SKIPPED,
        ActionStatus.COMPLETED,
        ActionStatus.COMPLETED,
    ]
    assert executor.get_result(resumed)["total"] == 30
    logs = executor.client.list_logs(resumed)
    assert not any("loading" in entry.message for entry in logs)  # LoadAction did not run again


def test_cancel_mid_action_stops_the_actor_and_freezes_the_run(executor, tmp_path):
    pid_file = tmp_path / "pid"
    run_id = executor.submit(
        PipelineDefinition("slow", actions("SlowAction", "SumAction")),
        {"seconds": 60, "pid_file": str(pid_file), "scaled": [1]},
    )
    wait_for(pid_file.exists, timeout=60, what="the slow action to start")
    pid = int(pid_file.read_text())
    executor.cancel(run_id)
    progress = executor.get_progress(run_id)
    assert progress.status == RunStatus.CANCELLED
    wait_for(lambda: not _alive(pid), timeout=10, what="the cancelled action's process to go away")
    assert not executor.actor_exists(f"raydrive-pipeline-{run_id}", "raydrive")
    assert executor.get_status(run_id) == RunStatus.CANCELLED  # the actor's last reports changed nothing
    with pytest.raises(ExecutionError, match="cancelled"):
        executor.wait(run_id, timeout_seconds=5)
    resumed = executor.submit(
        PipelineDefinition("slow", actions("SlowAction", "SumAction")),
        {"seconds": 0.1, "scaled": [1, 2]},
        resume_from=run_id,
    )
    assert executor.get_result(resumed, timeout=120)["total"] == 3  # no checkpoint: from the start


def test_result_from_another_process_through_the_service(executor, service):
    run_id = executor.submit(THREE, {"source": "x", "rows": 2})
    executor.wait(run_id, timeout_seconds=120, poll_interval=1.0)
    code = (
        "import raydrive, json, sys\n"
        f"ex = raydrive.get_executor('ray-pipeline', pipeline_service_url={service.url!r})\n"
        f"print(json.dumps(ex.get_result({run_id!r}, timeout=30)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"total": 10' in out.stdout


def test_unknown_run_and_unreachable_service(executor, ray_cluster, plugin_dir):
    with pytest.raises(JobNotFoundError):
        executor.get_result("no-such-run", timeout=5)
    with pytest.raises(JobNotFoundError):
        executor.submit(THREE, {"source": "x"}, resume_from="no-such-run")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    before = _pipeline_actors(ray_cluster)
    with (
        raydrive.get_executor(
            "ray-pipeline", ray_address=ray_cluster.address, working_dir=plugin_dir, pipeline_service_url=dead
        ) as offline,
        pytest.raises(ServiceUnavailableError) as info,
    ):
        offline.submit(THREE, {"source": "x"})
    assert dead in str(info.value) and "raydrive service" in str(info.value)
    assert _pipeline_actors(ray_cluster) - before == set()  # nothing was started on the cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _pipeline_actors(cluster) -> set[str]:
    from ray.util.state import list_actors

    alive = list_actors(address=cluster.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000)
    return {a.name for a in alive if (a.name or "").startswith("raydrive-pipeline-")}


def test_run_whose_actor_dies_is_marked_failed(executor, tmp_path):
    pid_file = tmp_path / "pid"
    run_id = executor.submit(
        PipelineDefinition("doomed", actions("SlowAction")), {"seconds": 60, "pid_file": str(pid_file)}
    )
    wait_for(pid_file.exists, timeout=60, what="the slow action to start")
    wait_for(
        lambda: executor.get_status(run_id) == RunStatus.RUNNING, timeout=30, what="the run to be running"
    )
    os.kill(int(pid_file.read_text()), 9)  # as the OOM killer would
    wait_for(lambda: executor.get_status(run_id) != RunStatus.RUNNING, timeout=30, what="the run to end")
    progress = executor.get_progress(run_id)
    assert progress.status == RunStatus.FAILED and "actor died" in progress.error


def test_token_protected_service_is_reached_by_executor_and_actor(
    ray_cluster, plugin_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("RAYDRIVE_SERVICE_TOKEN", "pipeline-token-planted")
    with (
        ServiceServer(db=tmp_path / "auth.db") as secured,
        raydrive.get_executor(
            "ray-pipeline", ray_address=ray_cluster.address, working_dir=plugin_dir,
            pipeline_service_url=secured.url,
        ) as ex,
    ):  # fmt: skip
        import httpx

        assert httpx.get(f"{secured.url}/api/v1/runs/").status_code == 401
        run_id = ex.submit(THREE, {"source": "auth", "rows": 1})
        assert ex.get_result(run_id, timeout=120)["total"] == 0
        assert [c.action_name for c in ex.client.list_checkpoints(run_id)] == [
            "LoadAction", "ScaleAction", "SumAction",
        ]  # fmt: skip


def _submit_script(service, ray_cluster, plugin_dir, body: str) -> str:
    return (
        "import os, sys\n"
        "os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'\n"
        f"sys.path.insert(0, {str(plugin_dir)!r})\n"
        "import raydrive\n"
        "from raydrive import BaseAction\n"
        "from pydantic import BaseModel\n"
        f"ex = raydrive.get_executor('ray-pipeline', ray_address={ray_cluster.address!r}, "
        f"working_dir={str(plugin_dir)!r}, pipeline_service_url={service.url!r})\n" + body
    )


def test_submit_then_exit_at_once_the_run_still_runs(executor, service, ray_cluster, plugin_dir):
    # The submitter exits right after submit() returns, without closing anything.
    code = _submit_script(
        service, ray_cluster, plugin_dir,
        f"print(ex.submit({THREE.actions!r}, {{'source': 'exit', 'rows': 3}}, name='exit'), flush=True)\n"
        "os._exit(0)\n",
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip().splitlines()[-1]
    final = executor.wait(run_id, timeout_seconds=120, poll_interval=1.0)
    assert final.status == RunStatus.COMPLETED
    assert executor.get_result(run_id)["total"] == 30


def test_pending_run_whose_actor_is_gone_is_marked_failed(executor):
    # A run registered whose actor never started (or is gone): nothing will ever move it.
    stored = executor.client.create_pipeline("orphan", [{"name": "LoadAction", "entrypoint": "m.LoadAction"}])
    run_id = executor.client.create_run(stored.id, params={}).id
    with pytest.raises(ExecutionError, match="never started"):
        executor.wait(run_id, timeout_seconds=60, poll_interval=1.0)
    assert executor.get_status(run_id) == RunStatus.FAILED


def test_a_class_that_is_not_an_action_is_refused_before_a_run_is_registered(executor):
    class NotAnAction:
        pass

    before = len(executor.client.list_runs(limit=1000))
    with pytest.raises(raydrive.ActionImportError, match="not a BaseAction"):
        executor.submit([NotAnAction], {}, name="refused")
    assert len(executor.client.list_runs(limit=1000)) == before


def test_an_action_defined_in_main_runs_like_on_ray_actor(service, ray_cluster, plugin_dir):
    code = _submit_script(
        service, ray_cluster, plugin_dir,
        "class P(BaseModel):\n    n: int\n"
        "class Double(BaseAction[P]):\n    def execute(self):\n        return {'n': self.params.n * 2}\n"
        "run_id = ex.submit([Double, Double], {'n': 3}, name='main-class')\n"
        "print(ex.get_result(run_id, timeout=120))\n",
    )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "{'n': 12}" in out.stdout


def test_working_dir_with_a_tilde_is_expanded(ray_cluster, service, plugin_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(plugin_dir.parent))
    with raydrive.get_executor(
        "ray-pipeline", ray_address=ray_cluster.address, working_dir=f"~/{plugin_dir.name}",
        pipeline_service_url=service.url,
    ) as ex:  # fmt: skip
        run_id = ex.submit(THREE, {"source": "tilde", "rows": 1})
        assert ex.get_result(run_id, timeout=120)["total"] == 0
        assert ex.client.get_run(run_id).work_dir == str(plugin_dir.resolve())


def test_lifecycle_events_name_the_pipeline_with_one_status_word(executor, plugin_manager, tmp_path):
    seen = []

    class Audit:
        @raydrive.hookimpl
        def raydrive_job_submitted(self, event):
            seen.append(("submitted", event.job_id, event.action, event.status))

        @raydrive.hookimpl
        def raydrive_job_finished(self, event):
            seen.append(("finished", event.job_id, event.action, event.status))

    plugin_manager.register(Audit(), name="audit")
    done = executor.submit(THREE, {"source": "x", "rows": 1})
    executor.wait(done, timeout_seconds=120, poll_interval=1.0)
    pid_file = tmp_path / "pid"
    slow = PipelineDefinition("slow-one", actions("SlowAction"))
    by_cancel = executor.submit(slow, {"seconds": 60, "pid_file": str(pid_file)})
    wait_for(pid_file.exists, timeout=60, what="the slow action to start")
    executor.cancel(by_cancel)
    by_wait = executor.submit(slow, {"seconds": 60})
    executor.client.cancel_run(by_wait)  # from elsewhere: the service only
    with pytest.raises(ExecutionError, match="cancelled"):
        executor.wait(by_wait, timeout_seconds=60, poll_interval=1.0)
    assert seen == [
        ("submitted", done, "etl", None),
        ("finished", done, "etl", "SUCCEEDED"),
        ("submitted", by_cancel, "slow-one", None),
        ("finished", by_cancel, "slow-one", "STOPPED"),
        ("submitted", by_wait, "slow-one", None),
        ("finished", by_wait, "slow-one", "STOPPED"),
    ]
