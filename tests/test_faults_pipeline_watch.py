"""A pipeline run whose actor dies is marked failed on the service without any client asking
(the page, ``raydrive pipeline list`` and ``watch`` read only the service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import raydrive
from raydrive.core.pipeline import RunStatus
from raydrive.service.server import ServiceServer
from tests.conditions import wait_for
from tests.plugin_dirs import plugin_module_dir

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent
MODULE = "rd_faults_watch_actions"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    with plugin_module_dir(tmp_path_factory, HERE / "actions_pipeline.py", MODULE) as root:
        yield root


def test_dead_pipeline_actor_marks_its_run_failed_unasked(ray_cluster, plugin_dir, tmp_path):

    from raydrive.service.client import PipelineServiceClient

    with (
        ServiceServer(db=tmp_path / "runs.db") as service,
        raydrive.get_executor(
            "ray-pipeline", ray_address=ray_cluster.address, working_dir=plugin_dir,
            pipeline_service_url=service.url, progress_interval=0.05, retries=0,
        ) as ex,
        PipelineServiceClient(service.url) as reader,  # the service only, as the page reads it
    ):  # fmt: skip
        # Nobody calls the executor from here on: the service alone must come to say failed.
        _killed_run_is_marked_failed(ex, reader)


def test_a_run_whose_service_is_gone_does_not_hold_up_the_others(ray_cluster, plugin_dir, tmp_path):
    # The watcher looked at the missing runs in turn and gave up its look at the first whose
    # service did not answer: a run reported to a service that had gone kept every later run
    # marked running.
    import ray

    from raydrive.drivers.ray.wire import NAMESPACE
    from raydrive.drivers.ray_pipeline.wire import pipeline_actor_name
    from raydrive.service.client import PipelineServiceClient

    options = {"ray_address": ray_cluster.address, "working_dir": plugin_dir, "progress_interval": 0.05}
    with (
        ServiceServer(db=tmp_path / "gone.db") as gone,
        raydrive.get_executor("ray-pipeline", pipeline_service_url=gone.url, retries=0, **options) as ex,
    ):
        orphan = ex.submit([f"{MODULE}.SlowAction"], {"seconds": 300}, name="orphan")
        wait_for(lambda: ex.client.get_progress(orphan).status is RunStatus.RUNNING, 120, "the run to start")
    # Its service is gone for good; its actor dies now, so the watcher keeps failing to mark it.
    ray.kill(ray.get_actor(pipeline_actor_name(orphan), namespace=NAMESPACE), no_restart=True)
    with (
        ServiceServer(db=tmp_path / "live.db") as service,
        raydrive.get_executor("ray-pipeline", pipeline_service_url=service.url, retries=0, **options) as ex,
        PipelineServiceClient(service.url) as reader,
    ):
        _killed_run_is_marked_failed(ex, reader)


def _killed_run_is_marked_failed(ex: Any, reader: Any) -> None:
    """Start a slow run, kill its pipeline actor for good, and wait for the service (read only
    through ``reader``, as the page does) to say the run failed because its actor died."""
    import ray

    from raydrive.drivers.ray.wire import NAMESPACE
    from raydrive.drivers.ray_pipeline.wire import pipeline_actor_name

    run = ex.submit([f"{MODULE}.SlowAction"], {"seconds": 300}, name="doomed")
    wait_for(lambda: reader.get_progress(run).status is RunStatus.RUNNING, 120, "the run to start")
    ray.kill(ray.get_actor(pipeline_actor_name(run), namespace=NAMESPACE), no_restart=True)
    progress = wait_for(
        lambda: (p := reader.get_progress(run)).status is RunStatus.FAILED and p,
        30,
        "the service to mark the run failed",
    )
    assert "pipeline actor" in (progress.error or "")
