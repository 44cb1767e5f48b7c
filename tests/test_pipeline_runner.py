"""The pipeline actor's core, against a real service on loopback (no Ray needed here)."""

from __future__ import annotations

import threading
import time

from raydrive.core.pipeline import ActionStatus, RunStatus
from raydrive.drivers.pipeline_runner import BufferedReporter, PipelineSpec, run_pipeline
from raydrive.service.client import PipelineServiceClient
from raydrive.service.server import ServiceServer

ACTIONS = [
    "tests.actions_pipeline.LoadAction",
    "tests.actions_pipeline.ScaleAction",
    "tests.actions_pipeline.SumAction",
]
NAMES = ["LoadAction", "ScaleAction", "SumAction"]


def new_run(client, params):
    pipeline = client.create_pipeline(
        "p", [{"name": n, "entrypoint": e} for n, e in zip(NAMES, ACTIONS, strict=True)]
    )
    return client.create_run(pipeline.id, params=params)


def test_three_actions_report_progress_checkpoints_and_result(tmp_path):
    with ServiceServer(db=tmp_path / "runs.db") as service, PipelineServiceClient(service.url) as client:
        run = new_run(client, {"source": "s3://x", "rows": 4})
        spec = PipelineSpec(run.id, service.url, ACTIONS, NAMES, dict(run.params))
        outcome = run_pipeline(spec, PipelineServiceClient(service.url, retries=0))
        assert outcome["status"] == "completed"
        assert outcome["result"]["total"] == 60
        final = client.get_run(run.id)
        assert final.status == RunStatus.COMPLETED and final.result["total"] == 60
        assert [p.status for p in final.progress] == [ActionStatus.COMPLETED] * 3
        assert all(p.started_at and p.completed_at for p in final.progress)
        checkpoints = client.list_checkpoints(run.id)
        assert [c.action_name for c in checkpoints] == NAMES
        assert checkpoints[1].params_snapshot["scaled"] == [0, 10, 20, 30]
        assert checkpoints[2].params_snapshot["source"] == "s3://x"
        logs = client.list_logs(run.id)
        assert any("loading 4 rows" in entry.message for entry in logs)


def test_failure_reports_failed_action_and_run(tmp_path):
    marker = tmp_path / "fail"
    marker.write_text("x")
    with ServiceServer(db=tmp_path / "runs.db") as service, PipelineServiceClient(service.url) as client:
        run = new_run(client, {"source": "a", "fail_marker": str(marker)})
        spec = PipelineSpec(run.id, service.url, ACTIONS, NAMES, dict(run.params))
        outcome = run_pipeline(spec, PipelineServiceClient(service.url, retries=0))
        assert outcome["status"] == "failed" and "marker present" in outcome["error"]
        final = client.get_run(run.id)
        assert final.status == RunStatus.FAILED and "marker present" in final.error
        assert [p.status for p in final.progress] == [
            ActionStatus.COMPLETED,
            ActionStatus.FAILED,
            ActionStatus.PENDING,
        ]
        assert [c.action_name for c in client.list_checkpoints(run.id)] == ["LoadAction"]


def test_service_outage_mid_run_loses_nothing(tmp_path):
    db = tmp_path / "runs.db"
    service = ServiceServer(db=db).start()
    port = service.port
    client = PipelineServiceClient(service.url)
    run = new_run(client, {"source": "a", "sleep": 2.0})
    spec = PipelineSpec(run.id, service.url, ACTIONS, NAMES, dict(run.params), progress_interval=0.0)
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(run_pipeline(spec, PipelineServiceClient(service.url, retries=0)))
    )
    runner.start()
    time.sleep(0.5)
    service.stop()  # the service goes away while ScaleAction runs
    time.sleep(2.5)
    assert runner.is_alive() or result.get("status") == "completed"  # the run went on
    service = ServiceServer(port=port, db=db).start()
    try:
        runner.join(60)
        assert result["status"] == "completed"
        final = client.get_run(run.id)
        assert final.status == RunStatus.COMPLETED
        assert [c.action_name for c in client.list_checkpoints(run.id)] == NAMES
        scale = final.progress[1]
        assert scale.status == ActionStatus.COMPLETED and scale.progress == 1.0
    finally:
        client.close()
        service.stop()


def test_reporter_batches_logs_and_keeps_order(tmp_path):
    with ServiceServer(db=tmp_path / "runs.db") as service, PipelineServiceClient(service.url) as client:
        run = new_run(client, {"source": "a"})
        reporter = BufferedReporter(PipelineServiceClient(service.url), run.id)
        for i in range(300):
            reporter.log(f"line {i}", "info", "LoadAction")
        reporter.close(timeout=30)
        messages = [e.message for e in client.list_logs(run.id, limit=1000)]
        assert messages == [f"line {i}" for i in range(300)]
        assert reporter.delivered < 300  # batched
