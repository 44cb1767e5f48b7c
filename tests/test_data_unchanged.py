"""Issue 23: what the caller gets back is what the action returned, on every driver that returns
results, through the public API only (``raydrive.get_executor``). Params and results with ML
names (``max_tokens``, ``total_tokens``, ``tokens_per_second``...) come back unchanged from
``execute`` / ``get_result`` / ``get_progress`` and the checkpoints, and a pipeline with
``max_tokens`` resumes with nothing re-entered.

On ray-pipeline these failed before the new redaction rule (the result, metrics and checkpoints
held ``***``; the resume asked for ``max_tokens`` again); on the other drivers they guard that
no masker comes between the action and its caller.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import raydrive
from raydrive import PipelineDefinition
from raydrive.core.pipeline import RunStatus
from raydrive.service.server import ServiceServer
from tests.actions_data_unchanged import METRICS, RESULT
from tests.plugin_dirs import plugin_module_dir

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent
MODULE = "rd_data_unchanged_actions"
GENERATE, GATE = f"{MODULE}.GenerateAction", f"{MODULE}.GateAction"
PARAMS = {
    "prompt": "hi",
    "max_tokens": 512,
    "num_tokens": 3,
    "token_count": 7,
    "tokenizer": "gpt2",
    "max_new_tokens": 64,
    "pad_token": "<pad>",
    "stop_token_ids": [2, 32000],
    "env": [{"name": "MAX_TOKENS", "value": "512"}],
}
EXPECTED = {"params": PARAMS, **RESULT}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    with plugin_module_dir(tmp_path_factory, HERE / "actions_data_unchanged.py", MODULE) as root:
        yield root


def test_local(plugin_dir):
    executor = raydrive.get_executor("local", working_dir=plugin_dir)
    assert executor.execute(GENERATE, PARAMS) == EXPECTED
    job = executor.submit(GENERATE, PARAMS)
    assert executor.get_result(job, timeout=60) == EXPECTED


def test_ray_actor(ray_cluster, plugin_dir):
    with raydrive.get_executor("ray-actor", ray_address=ray_cluster.address, working_dir=plugin_dir) as ex:
        assert ex.execute(GENERATE, PARAMS) == EXPECTED


@pytest.mark.parametrize("mode", ["task", "actor"])
def test_ray_job(ray_cluster, plugin_dir, mode):
    executor = raydrive.get_executor(
        "ray-job", ray_address=ray_cluster.address, working_dir=plugin_dir, mode=mode
    )
    job = executor.submit(GENERATE, PARAMS)
    assert executor.get_result(job, timeout=120) == EXPECTED


def test_ray_jobs_api(ray_cluster, plugin_dir):
    with raydrive.get_executor(
        "ray-jobs-api",
        dashboard_address=ray_cluster.dashboard_url,
        working_dir=str(plugin_dir),
        python_executable=sys.executable,
    ) as ex:
        job = ex.submit(GENERATE, PARAMS)
        assert ex.get_result(job, timeout=180) == EXPECTED


@pytest.fixture(scope="module")
def pipeline(ray_cluster, plugin_dir, tmp_path_factory):
    with (
        ServiceServer(db=tmp_path_factory.mktemp("svc") / "runs.db") as service,
        raydrive.get_executor(
            "ray-pipeline", ray_address=ray_cluster.address, working_dir=plugin_dir,
            pipeline_service_url=service.url, progress_interval=0.05,
        ) as ex,
    ):  # fmt: skip
        yield ex


TWO = PipelineDefinition(name="generate-then-gate", actions=[GENERATE, GATE])


def test_ray_pipeline_result_progress_and_checkpoints(pipeline):
    run_id = pipeline.submit(TWO, PARAMS)
    given = pipeline.get_result(run_id, timeout=180)["given"]
    assert given == {**PARAMS, **EXPECTED, "fail_marker": None}
    progress = pipeline.get_progress(run_id)
    assert progress.status is RunStatus.COMPLETED
    generate = progress.progress[0]
    assert {k: generate.metrics[k] for k in METRICS} == METRICS
    checkpoints = pipeline.client.list_checkpoints(run_id)
    assert checkpoints[0].params_snapshot == {**PARAMS, **EXPECTED}
    assert pipeline.client.get_run(run_id).params == PARAMS


def test_ray_pipeline_resumes_with_nothing_re_entered(pipeline, tmp_path):
    marker = tmp_path / "closed"
    marker.write_text("x")
    failed = pipeline.submit(TWO, {**PARAMS, "fail_marker": str(marker)})
    with pytest.raises(raydrive.ExecutionError, match="gate closed"):
        pipeline.get_result(failed, timeout=180)
    marker.unlink()
    resumed = pipeline.submit(TWO, {}, resume_from=failed)  # nothing given again
    given = pipeline.get_result(resumed, timeout=180)["given"]
    sent = {**PARAMS, "fail_marker": str(marker)}
    assert given == {**sent, **RESULT, "params": sent}
