"""ray-pipeline's submission failing: its own error reaches the caller, whatever the service does
while the run is marked failed."""

from __future__ import annotations

from pathlib import Path

import pytest

import raydrive
from raydrive import PipelineDefinition, ServiceError
from raydrive.service.server import ServiceServer
from tests.plugin_dirs import plugin_module_dir

pytestmark = pytest.mark.ray

HERE = Path(__file__).parent
MODULE = "rd_submit_error_actions"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    with plugin_module_dir(tmp_path_factory, HERE / "actions_pipeline.py", MODULE) as root:
        yield root


class StopsTheService:
    """A param that stops the pipeline service when Ray pickles it for the actor, then cannot be
    pickled: the actor's creation fails while the service is down (as when both go at once)."""

    def __init__(self, server: ServiceServer) -> None:
        self.server = server

    def __reduce__(self):
        self.server.stop()
        raise TypeError("this param cannot travel to the cluster")


def test_a_failed_submission_keeps_its_error_when_the_service_is_down(ray_cluster, plugin_dir, tmp_path):
    server = ServiceServer(db=tmp_path / "runs.db").start()
    try:
        ex = raydrive.get_executor(
            "ray-pipeline",
            ray_address=ray_cluster.address,
            working_dir=plugin_dir,
            pipeline_service_url=server.url,
        )
        pipeline = PipelineDefinition(name="fails", actions=[f"{MODULE}.LoadAction"])
        # A secret-looking name: the service stores '***', only the actor gets the value.
        with pytest.raises(Exception) as info:
            ex.submit(pipeline, {"source": "s", "api_token": StopsTheService(server)})
        assert not server.running
        # Before the fix: the failed status write (ServiceUnavailableError) replaced this error.
        assert not isinstance(info.value, ServiceError), repr(info.value)
        assert "cannot travel" in str(info.value), repr(info.value)
    finally:
        server.stop()
