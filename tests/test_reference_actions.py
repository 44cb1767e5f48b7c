"""Actions written as the reference SDK documents them run unchanged on every driver (issue 14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raydrive
from raydrive import LogLevel, PipelineDefinition
from raydrive.core.action import run_action
from raydrive.core.pipeline import RunStatus
from tests.plugin_dirs import plugin_module_dir

HERE = Path(__file__).parent
MODULE = "rd_reference_actions"
ENV = {
    "RD_REF_MODE": "prod",
    "RD_REF_N": "3",
    "RD_REF_RATIO": "0.5",
    "RD_REF_FLAG": "yes",
    "RD_REF_TAGS": "a, b",
}
EXPECTED = {
    "name": "train",
    "epochs": 2,
    "mode": "prod",
    "missing": None,
    "n": 3,
    "ratio": 0.5,
    "flag": True,
    "tags": ["a", "b"],
    "as_mapping": "prod",
    "keys": sorted(ENV),
}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """The reference actions as a plugin working dir, importable here and on the cluster."""
    with plugin_module_dir(tmp_path_factory, HERE / "actions_reference.py", MODULE) as root:
        yield root


ENTRY = f"{MODULE}.TrainAction"


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.steps: list[tuple[float, float, str | None]] = []
        self.values: list[tuple[dict[str, Any], Any]] = []
        self.events: list[tuple[str, dict[str, Any], str | None]] = []

    def log(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def progress(self, current: float, total: float, step: str | None) -> None:
        self.steps.append((current, total, step))

    def metrics(self, values: Any, step: Any) -> None:
        self.values.append((dict(values), step))

    def event(self, event: str, data: dict[str, Any], file: str | None) -> None:
        self.events.append((event, data, file))


def test_everything_the_action_reports_reaches_the_one_sink(plugin_dir):
    sink = _Recorder()
    with pytest.warns(DeprecationWarning, match="category"):
        result = run_action(ENTRY, {"epochs": 2}, env=ENV, sink=sink)
    assert result == EXPECTED
    assert sink.steps == [(0, 2, "train"), (1, 2, "train"), (2, 2, "train"), (1, 1, "export")]
    assert ({"loss": 1.0}, "train") in sink.values and ({"loss": 1.0, "epoch": 0}, "train") in sink.values
    assert ({"exported": 1}, "export") in sink.values
    assert [e[0] for e in sink.events] == ["train_done", "visualization", "export_done"]
    assert sink.events[1][2] == "sample-0.png" and sink.events[1][1]["caption"] == "first"
    levels = dict((m, lvl) for lvl, m in sink.lines)
    assert levels['reference training finished {"epochs": 2}'] == "info"
    assert levels["exported"] == "warning"
    assert levels["debug line"] == "debug" and levels["critical line"] == "critical"
    assert LogLevel.WARNING == "warning" and raydrive.LogLevel is LogLevel


def test_action_name_class_attribute_names_the_action(plugin_dir):
    cls = __import__(MODULE).TrainAction
    assert cls.name == "train" and cls.action_name == "train"


def test_env_typed_getter_with_garbage_is_a_clear_error():
    from raydrive.core.action import ActionEnvironment

    env = ActionEnvironment({"N": "three"})
    with pytest.raises(raydrive.ValidationError, match="'N'"):
        env.get_int("N")
    assert dict(env) == {"N": "three"} and "three" not in repr(env)


def test_local(plugin_dir):
    with raydrive.get_executor("local", working_dir=plugin_dir, env=ENV) as ex:
        assert ex.execute(ENTRY, {"epochs": 2}) == EXPECTED
    with pytest.raises(raydrive.InvalidOptionsError):
        raydrive.LocalExecutor(ENV, env=ENV)  # not both
    with raydrive.LocalExecutor(ENV, working_dir=plugin_dir) as ex:
        assert ex.execute(ENTRY, {"epochs": 2}) == EXPECTED


@pytest.mark.ray
def test_ray_actor(ray_cluster, plugin_dir):
    with raydrive.RayActorExecutor(ENV, ray_address=ray_cluster.address, working_dir=plugin_dir) as ex:
        assert ex.execute(ENTRY, {"epochs": 2}) == EXPECTED


@pytest.mark.ray
@pytest.mark.parametrize("mode", ["task", "actor"])
def test_ray_job(ray_cluster, plugin_dir, mode):
    options = {"ray_address": ray_cluster.address, "working_dir": plugin_dir, "mode": mode}
    with raydrive.RayJobExecutor(ENV, **options) as ex:
        job = ex.submit(ENTRY, {"epochs": 2})
        assert ex.get_result(job, timeout=120) == EXPECTED


@pytest.mark.ray
def test_ray_jobs_api(ray_cluster, plugin_dir):
    ex = raydrive.RayJobsApiExecutor(ENV, dashboard_address=ray_cluster.dashboard_url, working_dir=plugin_dir)
    with ex:
        job = ex.submit(ENTRY, {"epochs": 2})
        assert ex.get_result(job, timeout=180) == EXPECTED
        assert "reference training finished" in ex.get_logs(job)


@pytest.mark.ray
def test_ray_pipeline(ray_cluster, plugin_dir, tmp_path):
    from raydrive.service.server import ServiceServer

    with (
        ServiceServer(db=tmp_path / "runs.db") as service,
        raydrive.RayPipelineExecutor(
            ENV,
            ray_address=ray_cluster.address,
            working_dir=plugin_dir,
            pipeline_service_url=service.url,
            progress_interval=0.05,
        ) as ex,
    ):
        run_id = ex.submit(PipelineDefinition(name="reference", actions=[ENTRY]), {"epochs": 2})
        final = ex.wait(run_id, timeout_seconds=180, poll_interval=0.5)
        assert final.status == RunStatus.COMPLETED, final.error
        result = ex.get_result(run_id)
        assert {k: result[k] for k in EXPECTED} == EXPECTED
        messages = [entry.message for entry in ex.client.list_logs(run_id)]
        assert any("reference training finished" in m for m in messages)
        assert any("train_done" in m for m in messages)  # an event, through the same sink
