"""The pipeline actor's core, against a real service on loopback (no Ray needed here)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from raydrive.core.pipeline import ActionStatus, RunStatus
from raydrive.drivers.ray_pipeline.cancel import CancelWatcher
from raydrive.drivers.ray_pipeline.runner import BufferedReporter, PipelineSpec, run_pipeline
from raydrive.service.client import PipelineServiceClient
from raydrive.service.server import ServiceServer
from tests.conditions import wait_for

ACTIONS = [
    "tests.actions_pipeline.LoadAction",
    "tests.actions_pipeline.ScaleAction",
    "tests.actions_pipeline.SumAction",
]
NAMES = ["LoadAction", "ScaleAction", "SumAction"]


class SlowProxy:
    """A real TCP proxy on loopback in front of the service: each request waits ``delay`` s
    before it is forwarded (a slow service), and ``down()`` refuses every connection."""

    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self.delay = delay
        self._upstream = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: list[socket.socket] = []
        self._up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if not self._up:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream))
            except OSError:
                conn.close()
                continue
            self._open += [conn, upstream]
            threading.Thread(target=self._pipe, args=(conn, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while data := src.recv(65536):
                if slow and self.delay:
                    time.sleep(self.delay)  # the slowness under test, not a synchronisation
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        """Refuse new connections and cut the open ones (the service looks gone)."""
        self._up = False
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._open.clear()

    def up(self) -> None:
        self._up = True

    def close(self) -> None:
        self.down()
        self._server.close()


def new_run(client, params, actions=ACTIONS, names=NAMES):
    pipeline = client.create_pipeline(
        "p", [{"name": n, "entrypoint": e} for n, e in zip(names, actions, strict=True)]
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


def test_checkpoint_holds_the_params_of_its_own_action_with_a_slow_service(tmp_path):
    # Every request to the service takes 0.2 s: the reporter delivers action 1's checkpoint
    # long after actions 2 and 3 changed the params. The snapshot must be of the moment.
    with ServiceServer(db=tmp_path / "runs.db") as service, PipelineServiceClient(service.url) as client:
        proxy = SlowProxy(service.port, delay=0.2)
        try:
            run = new_run(client, {"source": "slow", "rows": 2})
            spec = PipelineSpec(run.id, proxy.url, ACTIONS, NAMES, dict(run.params), progress_interval=0.0)
            assert run_pipeline(spec, PipelineServiceClient(proxy.url, retries=0))["status"] == "completed"
        finally:
            proxy.close()
        first, second, third = client.list_checkpoints(run.id)
        assert first.params_snapshot == {"source": "slow", "rows": 2, "data": [0, 1]}
        assert "total" not in second.params_snapshot and second.params_snapshot["scaled"] == [0, 10]
        assert third.params_snapshot["total"] == 10 and first.result == {"data": [0, 1]}


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


@pytest.mark.parametrize(("kind", "named"), [("set", "set"), ("object", "object"), ("deep", "depth")])
def test_result_that_is_not_json_fails_the_action_with_a_clear_error(tmp_path, kind, named):
    actions, names = ["tests.actions_pipeline.BadResultAction", ACTIONS[0]], ["BadResultAction", "LoadAction"]
    with ServiceServer(db=tmp_path / "runs.db") as service, PipelineServiceClient(service.url) as client:
        run = new_run(client, {"kind": kind, "source": "x"}, actions, names)
        spec = PipelineSpec(run.id, service.url, actions, names, dict(run.params))
        outcome = run_pipeline(spec, PipelineServiceClient(service.url, retries=0))
        final = client.get_run(run.id)  # the cause reached the service; the run is not left running
        assert outcome["status"] == "failed" and final.status == RunStatus.FAILED
        assert "BadResultAction" in final.error and named in final.error
        assert "JSON" in final.error or "nested" in final.error
        assert (
            final.progress[0].status == ActionStatus.FAILED
            and final.progress[1].status == ActionStatus.PENDING
        )
        assert client.list_checkpoints(run.id) == []


def test_service_outage_mid_run_loses_nothing(tmp_path):
    db = tmp_path / "runs.db"
    done = tmp_path / "sum-ran"
    service = ServiceServer(db=db).start()
    port = service.port
    client = PipelineServiceClient(service.url)
    run = new_run(client, {"source": "a", "sleep": 2.0, "touch": str(done)})
    spec = PipelineSpec(run.id, service.url, ACTIONS, NAMES, dict(run.params), progress_interval=0.0)
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(run_pipeline(spec, PipelineServiceClient(service.url, retries=0)))
    )
    runner.start()
    wait_for(lambda: client.get_run(run.id).progress[1].status == ActionStatus.RUNNING, what="ScaleAction")
    service.stop()  # the service goes away while ScaleAction runs
    wait_for(done.exists, what="the last action to run while the service is away")
    assert runner.is_alive() and not result  # its reports wait for the service
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


def test_reporter_queue_is_bounded_and_keeps_checkpoints_and_the_outcome(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on yet: the service is away
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    reporter = BufferedReporter(PipelineServiceClient(url, retries=0), "pending-run", max_pending=100)
    entry = {"name": "LoadAction", "status": "running", "progress": 0.0}
    reporter.send("report_progress", status="running", current_action="LoadAction", action_progress=entry)
    for i in range(5000):
        reporter.send("report_progress", action_progress={**entry, "progress": i / 5000})
        reporter.log(f"line {i}", "info", "LoadAction")
        if i == 2500:
            reporter.send("create_checkpoint", action_name="LoadAction", action_index=0, params_snapshot={})
    reporter.send("report_progress", action_progress={**entry, "status": "completed", "progress": 1.0})
    reporter.send("update_run", status="completed", result={"n": 1})
    assert reporter.pending <= 101
    methods = reporter.pending_methods()
    assert methods.count("create_checkpoint") == 1 and methods[-1] == "update_run"
    assert reporter.coalesced > 0 and reporter.dropped > 0
    reporter.close(timeout=0)


def test_reporter_thread_survives_a_report_it_cannot_encode(tmp_path):
    with ServiceServer(db=tmp_path / "runs.db") as service, PipelineServiceClient(service.url) as client:
        run = new_run(client, {"source": "a"})
        reporter = BufferedReporter(PipelineServiceClient(service.url), run.id)
        reporter.send("report_progress", error=object())  # raises inside the client
        reporter.log("after the bad report", "info", None)
        # A lost outcome fails the run (after which the service takes no more logs: it is finished).
        reporter.send("update_run", result={"handle": object()})
        reporter.close(timeout=30)
        assert [e.message for e in client.list_logs(run.id)] == ["after the bad report"]
        assert len(reporter.errors) == 2 and "report_progress" in reporter.errors[0]
        assert "update_run" in reporter.errors[1]
        final = client.get_run(run.id)  # the lost outcome is not silent: the run says why
        assert final.status == RunStatus.FAILED and "could not report update_run" in final.error


def test_cancel_through_the_service_stops_a_tight_loop(tmp_path):
    actions, names = ["tests.actions_pipeline.SpinAction", ACTIONS[0]], ["SpinAction", "LoadAction"]
    pid_file = tmp_path / "pid"
    with ServiceServer(db=tmp_path / "runs.db") as service, PipelineServiceClient(service.url) as client:
        run = new_run(client, {"pid_file": str(pid_file), "source": "x"}, actions, names)
        spec = PipelineSpec(run.id, service.url, actions, names, dict(run.params))
        actor_client = PipelineServiceClient(service.url, retries=0)
        watcher = CancelWatcher(actor_client, run.id, interval=0.1)
        result: dict = {}
        runner = threading.Thread(
            target=lambda: result.update(run_pipeline(spec, actor_client, watcher=watcher))
        )
        runner.start()
        wait_for(pid_file.exists, what="the spinning action to start")
        client.cancel_run(run.id)
        runner.join(30)
        assert not runner.is_alive() and result["status"] == "cancelled"
        final = client.get_run(run.id)
        assert final.status == RunStatus.CANCELLED
        assert final.progress[1].status == ActionStatus.PENDING  # the next action never ran
