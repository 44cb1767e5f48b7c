"""raydrive on a real two-node cluster on loopback (issue 14): working dirs, spreading, node loss."""

from __future__ import annotations

import time

import pytest

from raydrive import PipelineDefinition
from raydrive.core.pipeline import RunStatus
from raydrive.drivers.ray_actor import RayActorExecutor
from raydrive.drivers.ray_job import RayJobExecutor
from tests.conditions import wait_for as _wait

pytestmark = [pytest.mark.ray, pytest.mark.multinode]

ACTIONS = """
import os
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class WhereParams(BaseModel):
    hold: float = 0.0


class WhereAction(BaseAction[WhereParams]):
    def execute(self) -> dict:
        import ray

        time.sleep(self.params.hold)
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "data": Path("data.txt").read_text(),
            "cwd": os.getcwd(),
        }


class StepParams(BaseModel):
    marker: str | None = None
    seconds: float = 0.0


class StepAction(BaseAction[StepParams]):
    def execute(self) -> dict:
        deadline = time.monotonic() + self.params.seconds
        while time.monotonic() < deadline:
            self.set_progress(1, 2, "waiting")
            time.sleep(0.1)
        return {"data": Path("data.txt").read_text()}
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mn_plugin")
    (root / "rd_mn_actions.py").write_text(ACTIONS)
    (root / "data.txt").write_text("payload from the working dir")
    return root


def _second_node_id(cluster) -> str:
    return cluster.second.node_id


def test_an_action_pinned_to_the_second_node_reads_its_working_dir_there(two_node_cluster, plugin_dir):
    with RayActorExecutor(
        ray_address=two_node_cluster.address, working_dir=plugin_dir, resources={"second_node": 1}
    ) as ex:
        result = ex.execute("rd_mn_actions.WhereAction", {})
    assert result["node"] == _second_node_id(two_node_cluster)
    assert result["data"] == "payload from the working dir"
    assert str(plugin_dir) not in result["cwd"]  # the unpacked copy on that node, not our dir


def test_a_batch_spreads_over_both_nodes(two_node_cluster, plugin_dir):
    ex = RayJobExecutor(ray_address=two_node_cluster.address, working_dir=plugin_dir, num_cpus=1)
    jobs = [ex.submit("rd_mn_actions.WhereAction", {"hold": 1.0}) for _ in range(6)]
    results = [ex.get_result(job, timeout=180) for job in jobs]
    assert {r["data"] for r in results} == {"payload from the working dir"}
    assert len({r["node"] for r in results}) == 2


def test_second_node_lost_under_a_pipeline_then_resume_on_a_new_node(two_node_cluster, plugin_dir, tmp_path):
    from raydrive.drivers.ray_pipeline import RayPipelineExecutor
    from raydrive.service.server import ServiceServer

    pipeline = PipelineDefinition(name="mn", actions=["rd_mn_actions.StepAction", "rd_mn_actions.StepAction"])
    with (
        ServiceServer(db=tmp_path / "runs.db") as service,
        RayPipelineExecutor(
            ray_address=two_node_cluster.address,
            working_dir=plugin_dir,
            pipeline_service_url=service.url,
            resources={"second_node": 1},
            progress_interval=0.1,
        ) as ex,
    ):
        run_id = ex.submit(pipeline, {"seconds": 120})
        _wait(lambda: ex.get_progress(run_id).status == RunStatus.RUNNING, 120, "the run to start")
        two_node_cluster.kill_second_raylet()
        asked = time.monotonic()
        failed = _wait(
            lambda: (p := ex.get_progress(run_id)).status.is_terminal() and p, 60, "the run to be failed"
        )
        assert failed.status == RunStatus.FAILED and time.monotonic() - asked <= 60
        two_node_cluster.stop_second()
        two_node_cluster.add_second_node()
        resumed = ex.submit(pipeline, {"seconds": 0}, resume_from=run_id)
        final = ex.wait(resumed, timeout_seconds=180, poll_interval=0.5)
        assert final.status == RunStatus.COMPLETED, final.error
        assert ex.get_result(resumed)["data"] == "payload from the working dir"
