"""``ray-jobs-api`` under bad input: garbage from a dashboard, hostile job ids, a server that never
answers, secrets left on disk, oversized uploads, things that are not actions (issues 9 and 14).

Fake dashboards are real HTTP servers on loopback; the entry point runs as a real process; the
rest uses the session's real local cluster.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raydrive import (
    ActionImportError,
    AuthenticationError,
    ClusterUnreachableError,
    DuplicateJobError,
    ExecutionError,
    JobNotFoundError,
    SubmissionError,
    WorkingDirError,
)
from raydrive.drivers.ray_jobs_api import RayJobsApiExecutor

Route = Callable[[str, str], tuple[int, str, bytes]]  # (method, path) -> (status, content type, body)
VERSION = (200, "application/json", json.dumps({"ray_version": "2.60.0", "version": "4"}).encode())


class FakeDashboard:
    """A real HTTP server; ``route`` answers each request, ``seen`` records (method, path)."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.seen: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.command, self.path))
                status, kind, body = outer.route(self.command, self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[Callable[[Route], FakeDashboard]]:
    made: list[FakeDashboard] = []

    def make(route: Route) -> FakeDashboard:
        made.append(FakeDashboard(route))
        return made[-1]

    yield make
    for server in made:
        server.close()


HTML = (200, "text/html", b"<!doctype html><html><body>Welcome to nginx</body></html>")


def _no_raw(exc: BaseException) -> None:
    assert not isinstance(exc, json.JSONDecodeError | AttributeError | KeyError | TypeError)
    assert not isinstance(exc, DuplicateJobError)


def test_a_server_answering_html_is_named_not_a_json_error(fake: Any, tmp_path: Path) -> None:
    server = fake(lambda method, path: HTML)
    ex = RayJobsApiExecutor(dashboard_address=server.url("admin:hunter2@"), working_dir=str(tmp_path))
    for call in (lambda: ex.get_status("raydrive_x"), lambda: ex.submit("mod.Action", {})):
        with pytest.raises(SubmissionError) as info:
            call()
        _no_raw(info.value)
        text = str(info.value)
        assert "does not answer like a Ray dashboard" in text and "text/html" in text
        assert f"admin:***@127.0.0.1:{server.port}" in text and "hunter2" not in text


@pytest.mark.parametrize("job_body", [b"[]", b"{}", b'{"status": "EXPLODED"}', b"null"])
def test_json_of_the_wrong_shape_is_a_submission_error_not_a_duplicate(
    fake: Any, tmp_path: Path, job_body: bytes
) -> None:
    def route(method: str, path: str) -> tuple[int, str, bytes]:
        if path == "/api/version":
            return VERSION
        if path.startswith("/api/v0/nodes"):
            return 200, "application/json", b'{"data": {"result": 42}}'
        return 200, "application/json", job_body

    server = fake(route)
    ex = RayJobsApiExecutor(dashboard_address=server.url(), working_dir=str(tmp_path))
    for call in (
        lambda: ex.get_status("raydrive_x"),
        lambda: ex.submit("mod.Action", {}),
        lambda: RayJobsApiExecutor(dashboard_address=server.url(), num_cpus=1).submit("mod.Action", {}),
    ):
        with pytest.raises(SubmissionError, match="does not answer like a Ray dashboard") as info:
            call()
        _no_raw(info.value)
    assert not any(method in ("PUT", "POST") for method, _ in server.seen)  # nothing was submitted


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_on_a_read_are_an_authentication_error(fake: Any, status: int) -> None:
    server = fake(lambda method, path: (status, "text/plain", b"Unauthorized: Missing authentication token"))
    ex = RayJobsApiExecutor(dashboard_address=server.url("ops:s3cret-pw@"))
    with pytest.raises(AuthenticationError) as info:
        ex.get_status("raydrive_x")
    assert info.value.status_code == status
    assert "ops:***@" in str(info.value) and "s3cret-pw" not in str(info.value)
    assert "RAY_AUTH_TOKEN" in str(info.value)


def test_a_gateway_error_page_is_cluster_unreachable(fake: Any) -> None:
    server = fake(lambda method, path: (502, "text/html", b"<html>502 Bad Gateway</html>"))
    with pytest.raises(ClusterUnreachableError, match="502") as info:
        RayJobsApiExecutor(dashboard_address=server.url()).get_logs("raydrive_x")
    _no_raw(info.value)


def test_job_ids_are_validated_and_never_become_another_path(fake: Any) -> None:
    job = (200, "application/json", json.dumps({"status": "RUNNING"}).encode())
    server = fake(lambda method, path: VERSION if path == "/api/version" else job)
    ex = RayJobsApiExecutor(dashboard_address=server.url())
    assert ex.get_status("raydrive_ok") == "RUNNING"  # the dashboard has answered once
    server.seen.clear()
    for hostile in ("../version", "..", "a/../../version", "x?y=1", "a b", "", "x\x00"):
        for call in (ex.get_status, ex.get_logs, ex.stop, ex.delete):
            with pytest.raises(JobNotFoundError):
                call(hostile)
    assert server.seen == []  # not /api/version, not anything
    with pytest.raises(SubmissionError, match="job id"):
        ex.submit("mod.Action", {}, job_id="../version")
    assert ex.cancel("../version") is False


def test_a_dashboard_that_accepts_and_never_answers_gives_up_within_connect_timeout() -> None:
    assert RayJobsApiExecutor().options.request_timeout == 30  # a person would wait that long
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # accepted, never answered
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    outcome: list[BaseException] = []
    ex = RayJobsApiExecutor(dashboard_address=url, connect_timeout=1, request_timeout=600)

    def call() -> None:
        try:
            ex.get_status("raydrive_x")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    try:
        worker.start()
        worker.join(timeout=60)  # request_timeout is 600 s: only connect_timeout ends it by then
        assert not worker.is_alive(), "still waiting: bounded by request_timeout, not connect_timeout"
        (exc,) = outcome
        assert isinstance(exc, ClusterUnreachableError)
        assert "accepted the connection but did not answer" in str(exc) and url in str(exc)
    finally:
        stop.set()
        ex.close()
        for sock in held:
            sock.close()
        listener.close()


def test_a_class_that_is_not_an_action_is_refused_before_any_request(fake: Any) -> None:
    server = fake(lambda method, path: VERSION)

    class NotAnAction:
        def execute(self) -> int:
            return 1

    with pytest.raises(ActionImportError, match="not a BaseAction subclass"):
        RayJobsApiExecutor(dashboard_address=server.url()).submit(NotAnAction, {})
    assert server.seen == []


def test_the_dashboard_upload_limit_is_checked_before_uploading(fake: Any, tmp_path: Path) -> None:
    def route(method: str, path: str) -> tuple[int, str, bytes]:
        if path == "/api/version":
            return VERSION
        if path.startswith("/api/jobs/"):
            return 404, "text/plain", b"not found"
        return 404, "text/plain", b""  # packages: not there yet

    server = fake(route)
    (tmp_path / "weights.bin").write_bytes(os.urandom(101 * 2**20))  # incompressible
    ex = RayJobsApiExecutor(dashboard_address=server.url(), working_dir=str(tmp_path))
    with pytest.raises(WorkingDirError) as info:
        ex.submit("mod.Action", {})
    assert "100.0 MiB" in str(info.value) and "101.0 MiB" in str(info.value)
    assert info.value.limit == 100 * 2**20
    assert not any(method in ("PUT", "POST") for method, _ in server.seen)


# --- the entry point, run as the real process a job runs ----------------------------------------
ENTRY_ACTIONS = """
from pydantic import BaseModel
from raydrive import BaseAction


class P(BaseModel):
    n: int = 1


class Fine(BaseAction[P]):
    def execute(self):
        return {"n": self.params.n}


class GivesASet(BaseAction[P]):
    def execute(self):
        return {"s": {3, 1, 2}}


class GivesAnObject(BaseAction[P]):
    def execute(self):
        return {"o": object()}
"""


def _entry(tmp_path: Path, args: list[str], payload: dict[str, Any] | str | None, job_id: str = "j1"):
    """Run the entry with a payload package on sys.path and stdout in a job-driver log file."""
    # Where Ray unpacks a py_modules package (and puts it on sys.path).
    site = tmp_path / "runtime_resources" / "py_modules_files" / "_raydrive_payload_abc"
    (site / "_rdp_abc").mkdir(parents=True, exist_ok=True)
    (site / "entry_actions.py").write_text(textwrap.dedent(ENTRY_ACTIONS))
    file = site / "_rdp_abc" / "payload.json"
    if payload is not None:
        file.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"job-driver-{job_id}.log", "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "raydrive.drivers.ray_jobs_api.entry", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.getcwd()])},
            cwd=site,
            timeout=120,
        )
    outcome = logs / "raydrive" / f"{job_id}.json"
    return proc.returncode, file, json.loads(outcome.read_text()) if outcome.exists() else None, logs


def _payload(action: str, **extra: Any) -> dict[str, Any]:
    from raydrive.drivers.ray_jobs_api.wire import PROTOCOL

    return {
        "protocol": PROTOCOL,
        "action": action,
        "params": {"n": 3},
        "env": {},
        "secrets": {"K": "v"},
        **extra,
    }


def test_the_entry_deletes_the_payload_on_every_way_out(tmp_path: Path) -> None:
    args = ["--job-id", "j1", "--payload", "_rdp_abc"]
    # Success: the result comes back, the payload is gone.
    code, file, outcome, _ = _entry(tmp_path, args, _payload("entry_actions.Fine"))
    assert (code, outcome["ok"], outcome["result"]) == (0, True, {"n": 3}) and not file.exists()
    # Fails before reading it: stdout is not a job-driver log (no log directory found).
    code, file, outcome, _ = _entry(tmp_path, args, _payload("entry_actions.Fine"), job_id="other")
    assert code == 2 and not file.exists()
    # A payload of another protocol, and garbage.
    for bad in (_payload("entry_actions.Fine", protocol=999), "{not json"):
        code, file, outcome, _ = _entry(tmp_path, args, bad)
        assert code == 2 and outcome["ok"] is False and not file.exists()
    # Bad arguments: the payload's name is not even known.
    code, file, outcome, _ = _entry(tmp_path, ["--job-id"], _payload("entry_actions.Fine"))
    assert code == 2 and not file.exists()


def test_results_follow_the_one_rule_of_every_driver(tmp_path: Path) -> None:
    """The shared rule (``raydrive.core.action.to_jsonable``): a ``set`` or ``object()`` is an
    ExecutionError naming its type, never a raw serialization error."""
    from raydrive.drivers.ray_jobs_api.wire import Outcome

    args = ["--job-id", "j1", "--payload", "_rdp_abc"]
    for action, named in (("GivesASet", "set"), ("GivesAnObject", "object")):
        code, _, outcome, _ = _entry(tmp_path, args, _payload(f"entry_actions.{action}"))
        assert code == 1 and outcome["ok"] is False
        error = Outcome.unpack(json.dumps(outcome)).error.to_raydrive("j1")
        assert isinstance(error, ExecutionError) and named in str(error)
        assert error.error_type == "ResultSerializationError"


# --- against the real cluster -------------------------------------------------------------------
MAIN_SCRIPT = """
import sys
from pydantic import BaseModel
from raydrive import BaseAction, RayJobsApiExecutor


class P(BaseModel):
    x: int


class InMain(BaseAction[P]):
    def execute(self):
        return {"twice": self.params.x * 2}


ex = RayJobsApiExecutor(dashboard_address=sys.argv[1], python_executable=sys.executable)
print("RESULT", ex.get_result(ex.submit(InMain, {"x": 21}), timeout=120))
"""


@pytest.mark.ray
def test_a_class_defined_in_main_runs_as_on_ray_actor(ray_cluster: Any, tmp_path: Path) -> None:
    script = tmp_path / "main_action.py"
    script.write_text(MAIN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), ray_cluster.dashboard_url],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT {'twice': 42}" in proc.stdout


@pytest.mark.ray
def test_delete_removes_the_result_file_and_cancel_matches_other_drivers(
    ray_cluster: Any, tmp_path: Path
) -> None:
    (tmp_path / "del_actions.py").write_text(
        textwrap.dedent(ENTRY_ACTIONS)
        + textwrap.dedent("""
        import time


        class Slow(BaseAction[P]):
            def execute(self):
                time.sleep(120)
        """)
    )
    ex = RayJobsApiExecutor(
        dashboard_address=ray_cluster.dashboard_url,
        working_dir=str(tmp_path),
        python_executable=sys.executable,
    )
    job_id = ex.submit("del_actions.Fine", {"n": 5})
    assert ex.get_result(job_id, timeout=120) == {"n": 5}
    info = httpx.get(f"{ray_cluster.dashboard_url}/api/jobs/{job_id}").json()

    def result_file() -> httpx.Response:
        return httpx.get(
            f"{ray_cluster.dashboard_url}/api/v0/logs/file",
            params={"node_id": info["driver_node_id"], "filename": f"raydrive/{job_id}.json", "lines": "-1"},
        )

    assert result_file().status_code == 200 and b'"n": 5' in result_file().content
    assert ex.delete(job_id) is True
    gone = result_file()
    assert b'"n": 5' not in gone.content and gone.status_code != 200, (gone.status_code, gone.content[:300])
    with pytest.raises(JobNotFoundError):
        ex.get_status(job_id)

    slow = ex.submit("del_actions.Slow", {})
    assert ex.cancel(slow) is True
    with pytest.raises(ExecutionError) as stopped:
        ex.get_result(slow, timeout=60)
    assert stopped.value.error_type == "STOPPED"
    assert ex.cancel(slow) is False  # already ended
    assert ex.stop(slow) is False  # the guide's alias
    assert ex.cancel(f"raydrive_unknown_{uuid.uuid4().hex[:8]}") is False  # unknown, as on ray-job
    ex.close()
