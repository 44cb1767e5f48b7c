"""A node's death under a pipeline run, seen by nobody but the service (issue 26): the run
watcher on the head marks the run failed without any client asking."""

from __future__ import annotations

from pathlib import Path

import pytest

from raydrive.core.pipeline import RunStatus
from tests.conditions import wait_for
from tests.plugin_dirs import plugin_module_dir

pytestmark = [pytest.mark.ray, pytest.mark.multinode]
MODULE = "rd_mn_faults_actions"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    source = Path(__file__).resolve().parents[1] / "actions_pipeline.py"
    with plugin_module_dir(tmp_path_factory, source, MODULE) as root:
        yield root


def test_node_lost_under_a_run_is_marked_failed_unasked(two_node_cluster, plugin_dir, tmp_path):
    from raydrive.drivers.ray_pipeline import RayPipelineExecutor
    from raydrive.service.client import PipelineServiceClient
    from raydrive.service.server import ServiceServer

    with (
        ServiceServer(db=tmp_path / "runs.db") as service,
        RayPipelineExecutor(
            ray_address=two_node_cluster.address,
            working_dir=plugin_dir,
            pipeline_service_url=service.url,
            resources={"second_node": 1},
            progress_interval=0.1,
            retries=0,
        ) as ex,
        PipelineServiceClient(service.url) as reader,  # what the page and the CLI read
    ):
        run = ex.submit([f"{MODULE}.SlowAction"], {"seconds": 300}, name="mn-watch")
        wait_for(lambda: reader.get_progress(run).status is RunStatus.RUNNING, 300, "the run to start")
        two_node_cluster.kill_second_raylet()
        try:
            failed = wait_for(
                lambda: (p := reader.get_progress(run)).status is RunStatus.FAILED and p,
                60,
                "the service to mark the run failed",
            )
            assert "pipeline actor" in (failed.error or "")
        finally:
            two_node_cluster.stop_second()
            two_node_cluster.add_second_node()  # the next tests of the session expect two nodes
