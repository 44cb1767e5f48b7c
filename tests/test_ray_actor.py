"""ray-actor / ray-task on the session's real local Ray cluster."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import raydrive
from raydrive import (
    ActorDiedError,
    ExecutionError,
    InfeasibleResourcesError,
    JobEvent,
    ValidationError,
    hookimpl,
)
from raydrive.core.protocols import SyncExecutor
from raydrive.drivers.ray.wire import NAMESPACE
from raydrive.drivers.ray_actor import RayActorExecutor, RayTaskExecutor
from tests.actions_for_tests import AddAction, BoomAction, RepeatAction
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

WD = Path(__file__).parent / "data" / "ray_wd"


@pytest.fixture(scope="module")
def wd_executor(ray_cluster):
    """One warm actor with the test working dir, shared by the tests that only read from it."""
    executor = RayActorExecutor(ray_address=ray_cluster.address, working_dir=WD)
    yield executor
    executor.shutdown()


def _actor_state(cluster, name: str) -> str | None:
    from ray.util.state import list_actors

    found = list_actors(address=cluster.dashboard_url, filters=[("name", "=", name)], detail=True)
    return found[0].state if found else None


def test_registered_names_and_alias(ray_cluster):
    assert RayTaskExecutor is RayActorExecutor
    for name in ("ray-actor", "ray-task"):
        executor = raydrive.get_executor(name, ray_address=ray_cluster.address)
        assert isinstance(executor, RayActorExecutor)
        assert isinstance(executor, SyncExecutor)


def test_actor_is_reused_and_keeps_module_state(wd_executor, ray_cluster):
    first = wd_executor.execute("rdwd_actions.StateAction", {})
    second = wd_executor.execute("rdwd_actions.StateAction", {})
    assert second["pid"] == first["pid"]
    assert second["count"] == first["count"] + 1  # module globals survived between calls
    assert wd_executor.execute("rdwd_actions.WdAddAction", {"a": 2, "b": 3}) == {"total": 5}
    # One live actor, the one named by the executor, in raydrive's namespace.
    assert _actor_state(ray_cluster, wd_executor.actor_name) == "ALIVE"
    from ray.util.state import list_actors

    alive = list_actors(address=ray_cluster.dashboard_url, filters=[("state", "=", "ALIVE")])
    mine = [a for a in alive if a.name == wd_executor.actor_name]
    assert len(mine) == 1 and mine[0].ray_namespace == NAMESPACE


def test_large_params_and_results_cross_intact(wd_executor):
    # Over Ray's inline limit (100 KiB) both ways: they travel through the object store.
    text = "0123456789abcdef" * 16_384  # 256 KiB
    got = wd_executor.execute(RepeatAction, {"text": text, "times": 8})
    assert got == {"text": text * 8, "length": len(text) * 8}
    assert wd_executor.execute(RepeatAction, {"text": "__main__ ", "times": 2}) == {  # the list form
        "text": "__main__ __main__ ",
        "length": 18,
    }


def test_bad_params_of_a_local_class_fail_before_submission(ray_cluster):
    executor = RayActorExecutor(ray_address=ray_cluster.address)
    with pytest.raises(ValidationError) as info:
        executor.execute(AddAction, {"b": 2})
    assert info.value.errors[0]["loc"] == ["a"]
    assert executor.actor_name is None  # nothing was started on the cluster


def test_bad_params_of_a_worker_only_class_come_back_as_validation_error(wd_executor):
    with pytest.raises(ValidationError) as info:
        wd_executor.execute("rdwd_actions.WdAddAction", {"a": "not a number"})
    assert not isinstance(info.value, ExecutionError)
    assert type(info.value) is ValidationError  # the worker's own error, not Ray's hybrid class
    assert info.value.errors[0]["loc"] == ["a"]
    assert wd_executor.execute("rdwd_actions.WdAddAction", {"a": 1}) == {"total": 2}  # actor unharmed


def test_unknown_entrypoint_is_an_action_import_error(wd_executor):
    with pytest.raises(raydrive.ActionImportError) as info:
        wd_executor.execute("rdwd_actions.NoSuchAction", {})
    assert "NoSuchAction" in str(info.value)


def test_action_exception_keeps_remote_type_message_and_traceback(wd_executor, ray_cluster):
    with pytest.raises(ExecutionError) as info:
        wd_executor.execute("rdwd_actions.FailAction", {"message": "bad input file"})
    err = info.value
    assert type(err) is ExecutionError
    assert err.error_type == "ValueError" and err.error_message == "bad input file"
    assert "rdwd_actions.py" in err.remote_traceback and "raise ValueError" in err.remote_traceback
    assert "Remote traceback" in str(err)
    # A local class too.
    with pytest.raises(ExecutionError) as info:
        RayActorExecutor(ray_address=ray_cluster.address).execute(BoomAction, {"message": "kaboom"})
    assert info.value.error_type == "RuntimeError" and "actions_for_tests.py" in info.value.remote_traceback


def test_killed_actor_raises_actor_died_and_next_call_recovers(ray_cluster):
    import ray

    executor = RayActorExecutor(ray_address=ray_cluster.address, working_dir=WD)
    try:
        before = executor.execute("rdwd_actions.StateAction", {})["pid"]
        name = executor.actor_name
        killer = threading.Timer(1.5, lambda: ray.kill(ray.get_actor(name, namespace=NAMESPACE)))
        killer.start()
        started = time.monotonic()
        with pytest.raises(ActorDiedError) as info:
            executor.execute("rdwd_actions.SleepAction", {"seconds": 30})
        killer.join()
        assert time.monotonic() - started < 20
        assert "died" in str(info.value)
        after = executor.execute("rdwd_actions.StateAction", {})
        assert after["pid"] != before and after["count"] == 1  # a fresh actor, fresh module state
        # A worker that exits under the call is the same story.
        with pytest.raises(ActorDiedError):
            executor.execute("rdwd_actions.ExitAction", {})
        assert executor.execute("rdwd_actions.WdAddAction", {"a": 1}) == {"total": 2}
    finally:
        executor.shutdown()


def test_shutdown_kills_the_actor_and_the_executor_can_be_used_again(ray_cluster):
    with RayActorExecutor(ray_address=ray_cluster.address) as executor:
        assert executor.execute(AddAction, {"a": 1}) == {"total": 2}
        first = executor.actor_name
    assert executor.actor_name is None
    wait_for(lambda: _actor_state(ray_cluster, first) == "DEAD", 15, "the shut-down actor to be DEAD")
    assert executor.execute(AddAction, {"a": 2}) == {"total": 3}
    assert executor.actor_name not in (None, first)
    executor.close()


def test_resources_reach_the_action_and_infeasible_fails_at_once(ray_cluster):
    executor = RayActorExecutor(
        ray_address=ray_cluster.address, working_dir=WD, num_cpus=0.5, resources={"raydrive_test": 1}
    )
    try:
        seen = executor.execute("rdwd_actions.ResourcesAction", {})["resources"]
        assert seen["raydrive_test"] == 1.0 and seen["CPU"] == 0.5
    finally:
        executor.shutdown()
    started = time.monotonic()
    with pytest.raises(InfeasibleResourcesError) as info:
        RayActorExecutor(ray_address=ray_cluster.address, num_gpus=1).execute(AddAction, {"a": 1})
    assert time.monotonic() - started < 10
    assert "GPU=1" in str(info.value)
    with pytest.raises(InfeasibleResourcesError):
        RayActorExecutor(ray_address=ray_cluster.address, resources={"raydrive_test": 5}).execute(
            AddAction, {"a": 1}
        )


def test_lifecycle_hooks_are_called(ray_cluster, plugin_manager):
    events: list[tuple[str, JobEvent]] = []

    class Recorder:
        @hookimpl
        def raydrive_job_submitted(self, event: JobEvent) -> None:
            events.append(("submitted", event))

        @hookimpl
        def raydrive_job_finished(self, event: JobEvent) -> None:
            events.append(("finished", event))

    plugin_manager.register(Recorder(), name="recorder")
    executor = RayActorExecutor(ray_address=ray_cluster.address)
    try:
        executor.execute(AddAction, {"a": 1}, job_id="call-1")
        with pytest.raises(ExecutionError):
            executor.execute(BoomAction, {}, job_id="call-2")
    finally:
        executor.shutdown()
    assert [(kind, e.job_id, e.status) for kind, e in events] == [
        ("submitted", "call-1", None),
        ("finished", "call-1", "SUCCEEDED"),
        ("submitted", "call-2", None),
        ("finished", "call-2", "FAILED"),
    ]
    assert {e.driver for _, e in events} == {"ray-actor"}


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "rd_tinywheel").mkdir(parents=True)
    (src / "rd_tinywheel" / "__init__.py").write_text('VALUE = "installed from a local wheel"\n')
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "rd-tinywheel"\nversion = "0.1.0"\n'
    )
    wd = tmp_path / "plugin"
    (wd / "wheels").mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(wd / "wheels"), str(src)],
        check=True,
    )  # fmt: skip
    return wd


def test_wheel_from_the_working_dir_is_installed_in_the_job_env(ray_cluster, tmp_path):
    wd = _build_wheel(tmp_path)
    (wheel,) = (wd / "wheels").glob("rd_tinywheel-*.whl")
    (wd / "requirements.txt").write_text(f"wheels/{wheel.name}\n")
    (wd / "rdwd_actions.py").write_text((WD / "rdwd_actions.py").read_text())
    with pytest.raises(ImportError):
        __import__("rd_tinywheel")  # not installed here: only the job's env has it
    executor = RayActorExecutor(
        ray_address=ray_cluster.address,
        working_dir=wd,
        package_manager_options=["--no-index"],  # nothing is downloaded
    )
    try:
        result = executor.execute("rdwd_actions.WheelAction", {})
    finally:
        executor.shutdown()
    assert result["value"] == "installed from a local wheel"
    # Installed by Ray's pip plugin into the job's own virtualenv, not imported from the working dir.
    assert "site-packages" in result["file"] and "runtime_resources" in result["file"]
    pip = executor.last_runtime_env["pip"]
    assert pip["packages"] == [f"${{RAY_RUNTIME_ENV_CREATE_WORKING_DIR}}/wheels/{wheel.name}"]
    assert "--no-index" in pip["pip_install_options"]


def test_module_raising_at_import_is_an_action_import_error(ray_cluster):
    executor = RayActorExecutor(ray_address=ray_cluster.address)
    try:
        with pytest.raises(raydrive.ActionImportError) as info:
            executor.execute("tests.actions_import_raises.Anything", {})
        assert "tests.actions_import_raises" in str(info.value)
        assert "missing MODEL_DIR" in str(info.value)
    finally:
        executor.shutdown()


def test_module_failing_to_import_only_here_still_runs_on_the_worker(ray_cluster, monkeypatch):
    import os

    monkeypatch.setenv("RD_BREAK_IMPORT_PID", str(os.getpid()))
    with pytest.raises(RuntimeError):  # the caller cannot import it...
        __import__("tests.actions_import_guard")
    executor = RayActorExecutor(ray_address=ray_cluster.address)
    try:  # ...the worker can, and the call is not refused here
        result = executor.execute("tests.actions_import_guard.GuardAction", {"a": 5})
        assert result["a"] == 5 and result["pid"] != os.getpid()
    finally:
        executor.shutdown()


class _NotAnAction:
    def execute(self) -> dict:
        return {}


def test_a_class_that_is_not_an_action_is_refused_before_anything_starts(ray_cluster):
    executor = RayActorExecutor(ray_address=ray_cluster.address)
    with pytest.raises(raydrive.ActionImportError):
        executor.execute(_NotAnAction, {})
    assert executor.actor_name is None
