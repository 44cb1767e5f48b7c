"""Safe resume for ray-pipeline: the refusals, checked against runs recorded on a real service."""

from __future__ import annotations

from pathlib import Path

import pytest

import raydrive
from raydrive import PipelineDefinition
from raydrive.core.pipeline import RunStatus
from raydrive.drivers.ray_pipeline.resume import fingerprint
from raydrive.service.server import ServiceServer
from tests.plugin_dirs import plugin_module_dir

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent
MODULE = "rd_pipeline_resume_actions"
ACTIONS = [f"{MODULE}.{n}" for n in ("LoadAction", "ScaleAction", "SumAction")]


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    with plugin_module_dir(tmp_path_factory, HERE / "actions_pipeline.py", MODULE) as root:
        yield root


@pytest.fixture(scope="module")
def executor(ray_cluster, plugin_dir, tmp_path_factory):
    with (
        ServiceServer(db=tmp_path_factory.mktemp("svc") / "runs.db") as service,
        raydrive.get_executor(
            "ray-pipeline", ray_address=ray_cluster.address, working_dir=plugin_dir,
            pipeline_service_url=service.url, progress_interval=0.05,
        ) as ex,
    ):  # fmt: skip
        yield ex


def _recorded_run(ex, status: str, *, schema_of_first: str | None = None) -> str:
    """A run as the service holds it: the definition's fingerprint, a checkpoint after action 1."""
    names = ["LoadAction", "ScaleAction", "SumAction"]
    definition = fingerprint(names, [ex.action(a) for a in ACTIONS])
    if schema_of_first is not None:
        definition[0] = definition[0].model_copy(update={"params_schema": schema_of_first})
    stored = ex.client.create_pipeline(
        "recorded", [{"name": n, "entrypoint": a} for n, a in zip(names, ACTIONS, strict=True)]
    )
    run_id = ex.client.create_run(stored.id, params={"source": "x", "rows": 2}, fingerprint=definition).id
    ex.client.report_progress(run_id, status="running")
    ex.client.create_checkpoint(
        run_id,
        "LoadAction",
        0,
        status="completed",
        params_snapshot={"source": "x", "rows": 2, "data": [0, 1]},
    )
    if status != "running":
        ex.client.update_run(run_id, status=status)
    return run_id


def test_resume_refusals_and_force(executor):
    params = {"source": "x", "rows": 2}
    failed = _recorded_run(executor, "failed")
    swapped = PipelineDefinition("swapped", [ACTIONS[1], ACTIONS[0], ACTIONS[2]])
    with pytest.raises(raydrive.SubmissionError, match=r"action #0 'ScaleAction'.*force=True"):
        executor.submit(swapped, params, resume_from=failed)
    other_schema = _recorded_run(executor, "failed", schema_of_first="0" * 64)
    with pytest.raises(raydrive.SubmissionError, match=r"'LoadAction'.*params schema"):
        executor.submit(PipelineDefinition("same", ACTIONS), params, resume_from=other_schema)
    for status in ("running", "completed"):
        with pytest.raises(raydrive.SubmissionError, match=status):
            executor.submit(
                PipelineDefinition("same", ACTIONS), params, resume_from=_recorded_run(executor, status)
            )
    forced = executor.submit(
        PipelineDefinition("same", ACTIONS), params, resume_from=other_schema, force=True
    )
    assert executor.get_result(forced, timeout=120)["total"] == 10  # from the checkpoint: [0, 1] * 10
    run = executor.client.get_run(forced)
    assert run.resumed_from == other_schema and run.status is RunStatus.COMPLETED
    assert [c.action_name for c in executor.client.list_checkpoints(forced)] == ["ScaleAction", "SumAction"]
    same = executor.submit(PipelineDefinition("same", ACTIONS), params, resume_from=failed)
    assert executor.get_result(same, timeout=120)["total"] == 10
    assert executor.client.get_run(same).resumed_from == failed
