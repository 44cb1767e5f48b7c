"""``ray-jobs-api`` against a real local cluster (the session's ``ray_cluster``, over its dashboard).

The actions live in a working directory written by the tests, so every job ships a working dir as
a user's would. The job's entry runs with this interpreter (``python_executable``): the test
cluster's PATH does not lead to the venv that runs Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import raydrive
from raydrive import (
    ActionImportError,
    ActorDiedError,
    ClusterUnreachableError,
    DuplicateJobError,
    ExecutionError,
    ExecutionTimeoutError,
    InfeasibleResourcesError,
    InvalidOptionsError,
    JobNotFoundError,
    RaydriveError,
    SubmissionError,
    ValidationError,
    hookimpl,
)
from raydrive.core.plugins import PluginManager
from raydrive.core.protocols import LogStreamingExecutor
from raydrive.drivers.ray_jobs_api import RayJobsApiExecutor
from tests.conditions import wait_for

pytestmark = pytest.mark.ray

ACTIONS = '''
import hashlib
import os
import re
import sys
import threading
import time

from pydantic import BaseModel

import raydrive
from raydrive import BaseAction


class AddParams(BaseModel):
    a: int
    b: int = 1


class AddResult(BaseModel):
    total: int


class Add(BaseAction[AddParams]):
    result_model = AddResult

    def execute(self):
        self.logger.info("adding")
        self.logger.set_progress(1, 1, step="add")
        self.logger.set_metrics({"loss": 0.5}, step=1)
        return AddResult(total=self.params.a + self.params.b)


class BlobParams(BaseModel):
    blob: str
    noise: int = 0


class Blob(BaseAction[BlobParams]):
    """Big params in; output that looks like result markers; a digest out."""

    def execute(self):
        forged = '{"ok": true, "result": "forged"}'
        for _ in range(self.params.noise):
            print("__RAYDRIVE_RESULT__ " + forged)
            print(forged)
        return {"size": len(self.params.blob), "sha": hashlib.sha256(self.params.blob.encode()).hexdigest()}


class LinesParams(BaseModel):
    n: int
    delay: float = 0.0
    tail: str = ""


class Lines(BaseAction[LinesParams]):
    def execute(self):
        for i in range(self.params.n):
            print(f"line {i:05d}")
            if self.params.delay:
                time.sleep(self.params.delay)
        # The last words, without a newline, right before the process exits.
        sys.stdout.write(self.params.tail)
        sys.stdout.flush()
        return {"n": self.params.n}


class BoomParams(BaseModel):
    message: str = "boom"


class Boom(BaseAction[BoomParams]):
    def execute(self):
        raise RuntimeError(self.params.message)


class Die(BaseAction[BoomParams]):
    def execute(self):
        os._exit(3)


class KeysParams(BaseModel):
    keys: list[str]


class EnvDigest(BaseAction[KeysParams]):
    """Digests (never values) of environment variables, from os.environ and the context."""

    def execute(self):
        def digest(value):
            return None if value is None else hashlib.sha256(value.encode()).hexdigest()

        return {
            "os": {k: digest(os.environ.get(k)) for k in self.params.keys},
            "ctx": {k: digest(self.ctx.env.get(k)) for k in self.params.keys},
        }


class SleepParams(BaseModel):
    seconds: float


class Sleep(BaseAction[SleepParams]):
    def execute(self):
        print(f"pid {os.getpid()}", flush=True)
        time.sleep(self.params.seconds)
        return "woke"


class RayInside(BaseAction[KeysParams]):
    """Uses Ray from inside the job, as a training job launching tasks would."""

    def execute(self):
        import ray

        ray.init()

        @ray.remote(num_cpus=0.5)
        def probe(keys):
            return {k: k in os.environ for k in keys}

        seen = ray.get(probe.remote(self.params.keys))
        modules = ray.get_runtime_context().runtime_env.get("py_modules") or []
        return {"task_sees": seen, "driver_sees": {k: k in os.environ for k in self.params.keys},
                "py_modules": [str(m) for m in modules]}


class Where(BaseAction[BoomParams]):
    def execute(self):
        return {"raydrive": raydrive.__file__, "cwd": os.getcwd()}


class PathParams(BaseModel):
    path: str
    seconds: float = 0.0


class Linger(BaseAction[PathParams]):
    """Returns at once; a non-daemon thread keeps the process (and the job) alive a while."""

    def execute(self):
        def finish():
            time.sleep(self.params.seconds)
            with open(self.params.path, "w") as f:
                f.write("thread done")

        threading.Thread(target=finish).start()
        return "returned"


class _Holder:
    def __init__(self, file):
        self.file = file
        self.me = self  # a cycle: only the collector's pass at interpreter exit frees it


_KEPT = []


class Unflushed(BaseAction[PathParams]):
    """Leaves a file open and unflushed, held by a cycle, for the process's exit to flush."""

    def execute(self):
        holder = _Holder(open(self.params.path, "w"))
        holder.file.write("flushed at exit")
        _KEPT.append(holder)
        return "left open"
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A working dir with the test actions, importable here too (so params validate locally)."""
    root = tmp_path_factory.mktemp("jobsapi_plugin")
    (root / "jobsapi_actions.py").write_text(textwrap.dedent(ACTIONS))
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("jobsapi_actions", None)


def make_executor(cluster: Any, plugin_dir: Path, **options: Any) -> RayJobsApiExecutor:
    options.setdefault("python_executable", sys.executable)
    return RayJobsApiExecutor(dashboard_address=cluster.dashboard_url, working_dir=str(plugin_dir), **options)


@pytest.fixture(scope="module")
def executor(ray_cluster: Any, plugin_dir: Path) -> Iterator[RayJobsApiExecutor]:
    with make_executor(ray_cluster, plugin_dir) as ex:
        yield ex


@pytest.fixture(scope="module")
def setup_failure(ray_cluster: Any, plugin_dir: Path) -> tuple[RayJobsApiExecutor, str, float]:
    """A job whose requirement cannot be installed (nothing is downloaded: ``--no-index``).

    Submitted by the first test of the module and checked by the last: Ray retries the setup
    (a new virtualenv each time) for about half a minute, which then overlaps the other tests.
    """
    ex = make_executor(
        ray_cluster,
        plugin_dir,
        runtime_env={"pip": ["raydrive-no-such-package==9.9.9"]},
        package_manager_options=["--no-index"],
    )
    return ex, ex.submit("jobsapi_actions.Add", {"a": 1}), time.monotonic()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    @hookimpl
    def raydrive_job_submitted(self, event: Any) -> None:
        self.events.append(("submitted", event.job_id, event.status))

    @hookimpl
    def raydrive_job_finished(self, event: Any) -> None:
        self.events.append(("finished", event.job_id, event.status))


def job_json(cluster: Any, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{cluster.dashboard_url}/api/jobs/{job_id}").json()


def supervisor_resources(cluster: Any, job_id: str) -> dict[str, float]:
    response = httpx.get(
        f"{cluster.dashboard_url}/api/v0/actors",
        params={
            "detail": "1",
            "filter_keys": "name",
            "filter_predicates": "=",
            "filter_values": f"_ray_internal_job_actor_{job_id}",
        },
    )
    (actor,) = response.json()["data"]["result"]["result"]
    return actor["required_resources"]


# --- the happy path -----------------------------------------------------------------------------
def test_submit_result_resources_events_and_an_overriding_ray_address(
    ray_cluster: Any, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, setup_failure: Any
) -> None:
    # Ray's client would go to these instead of the explicit address; raydrive must not.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9")
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:9")
    recorder = Recorder()
    manager = PluginManager()
    manager.register(recorder, name="recorder")
    ex = make_executor(
        ray_cluster,
        plugin_dir,
        plugins=manager,
        num_cpus=0.5,
        memory=64 * 1024 * 1024,
        resources={"raydrive_test": 1},
    )
    assert isinstance(ex, LogStreamingExecutor)
    from jobsapi_actions import Add

    job_id = ex.submit(Add, {"a": 2, "b": 3})
    assert ex.get_result(job_id, timeout=120) == {"total": 5}
    assert ex.get_result(job_id) == {"total": 5}  # again: read again, reported once
    assert ex.get_status(job_id) == "SUCCEEDED"
    from ray.job_submission import JobStatus

    assert ex.get_status(job_id) is JobStatus.SUCCEEDED
    assert ex.wait(job_id) == "SUCCEEDED"
    assert recorder.events == [("submitted", job_id, None), ("finished", job_id, "SUCCEEDED")]
    assert supervisor_resources(ray_cluster, job_id) == {
        "CPU": 0.5,
        "memory": 64 * 1024 * 1024,
        "raydrive_test": 1.0,
    }
    logs = ex.get_logs(job_id)
    assert "[INFO] adding" in logs
    assert "[PROGRESS] 1/1 (add)" in logs
    assert '[METRICS] {"loss": 0.5} at step 1' in logs
    info = job_json(ray_cluster, job_id)
    assert info["metadata"]["raydrive_action"] == "jobsapi_actions.Add"
    assert info["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_")
    ex.close()
    assert ex.get_status(job_id) == "SUCCEEDED"  # usable after close()


def test_get_executor_by_name(ray_cluster: Any, plugin_dir: Path) -> None:
    with raydrive.get_executor(
        "ray-jobs-api",
        dashboard_address=ray_cluster.dashboard_url,
        working_dir=str(plugin_dir),
        python_executable=sys.executable,
    ) as ex:
        assert isinstance(ex, RayJobsApiExecutor)
        job_id = ex.submit("jobsapi_actions.Add", {"a": 40, "b": 2})
        assert ex.get_result(job_id, timeout=120) == {"total": 42}


def test_big_params_and_output_that_forges_result_markers(
    executor: RayJobsApiExecutor, ray_cluster: Any
) -> None:
    blob = uuid.uuid4().hex * (1_000_000 // 32)  # 1 MB
    job_id = executor.submit("jobsapi_actions.Blob", {"blob": blob, "noise": 50})
    result = executor.get_result(job_id, timeout=120)
    assert result == {"size": len(blob), "sha": hashlib.sha256(blob.encode()).hexdigest()}
    info = job_json(ray_cluster, job_id)
    shown = json.dumps(info)
    assert blob[:64] not in shown
    assert len(shown) < 10_000, "params must not travel in the entrypoint, runtime env or metadata"
    assert "forged" in executor.get_logs(job_id)


def test_concurrent_submissions_from_one_working_dir(executor: RayJobsApiExecutor) -> None:
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        job_id = executor.submit("jobsapi_actions.Add", {"a": i, "b": 1000})
        results[i] = executor.get_result(job_id, timeout=120)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert results == {i: {"total": i + 1000} for i in range(3)}


# --- logs -----------------------------------------------------------------------------------------
def test_stream_logs_misses_no_line_of_ten_thousand(executor: RayJobsApiExecutor) -> None:
    job_id = executor.submit("jobsapi_actions.Lines", {"n": 10_000, "tail": "the very last words"})
    lines = list(executor.stream_logs(job_id, timeout=180))
    assert all(line.endswith("\n") for line in lines)
    numbered = [line for line in lines if line.startswith("line ")]
    assert numbered == [f"line {i:05d}\n" for i in range(10_000)]
    assert lines[-1] == "the very last words\n"
    assert any("Runtime env is setting up" in line for line in lines)  # Ray's setup line
    assert executor.get_status(job_id) == "SUCCEEDED"
    assert "".join(lines) == executor.get_logs(job_id) + "\n"
    assert executor.get_result(job_id) == {"n": 10_000}


def test_stream_logs_async_follows_a_running_job(executor: RayJobsApiExecutor) -> None:
    job_id = executor.submit("jobsapi_actions.Lines", {"n": 20, "delay": 0.05, "tail": "bye"})

    async def follow() -> list[str]:
        return [line async for line in executor.stream_logs_async(job_id)]

    lines = asyncio.run(follow())
    assert [line for line in lines if line.startswith("line ")] == [f"line {i:05d}\n" for i in range(20)]
    assert lines[-1] == "bye\n"
    # The sync stream works inside a running event loop too.

    async def sync_inside_loop() -> list[str]:
        return list(executor.stream_logs(job_id, timeout=60))

    assert asyncio.run(sync_inside_loop()) == lines


def test_stream_logs_stops_at_its_timeout_and_early_exit_is_clean(executor: RayJobsApiExecutor) -> None:
    job_id = executor.submit("jobsapi_actions.Sleep", {"seconds": 60})
    start = time.monotonic()
    list(executor.stream_logs(job_id, timeout=2))
    assert time.monotonic() - start < 10
    stream = executor.stream_logs(job_id)
    for line in stream:
        if line.startswith("pid "):
            break
    stream.close()  # the follower thread is cancelled
    assert executor.stop(job_id) is True


def test_get_result_returns_once_ray_says_the_job_ended_and_reads_the_outcome_once(
    executor: RayJobsApiExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The entry writes the outcome when the action returns; this job's process lives on for 3 s
    # (a non-daemon thread). get_result sees the outcome early but still waits for Ray's end, so
    # that get_status agrees with it, and it does not read the outcome file a second time.
    from raydrive.drivers.ray_jobs_api.dashboard import AsyncDashboard
    from raydrive.drivers.ray_jobs_api.wire import Outcome, result_filename

    reads: list[str] = []
    read_file = AsyncDashboard.read_file

    async def counted(self: AsyncDashboard, node: str, filename: str, **kw: Any) -> bytes | None:
        data = await read_file(self, node, filename, **kw)
        if data is not None and Outcome.unpack(data) is not None:  # not "no such file (yet)"
            reads.append(filename)
        return data

    monkeypatch.setattr(AsyncDashboard, "read_file", counted)
    marker = tmp_path / "thread.txt"
    job_id = executor.submit("jobsapi_actions.Linger", {"path": str(marker), "seconds": 3})
    assert executor.get_result(job_id, timeout=120) == "returned"
    assert reads == [result_filename(job_id)]
    assert executor.get_status(job_id) == "SUCCEEDED"
    assert marker.read_text() == "thread done"  # the process had exited: its thread had finished


def test_a_failing_look_at_the_outcome_does_not_fail_the_wait(
    executor: RayJobsApiExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The look beside each status poll goes through the log API of the busy node: when it fails,
    # the wait goes on polling the status alone, and the outcome is read once the job ended.
    from raydrive.drivers.ray_jobs_api.dashboard import AsyncDashboard

    calls: list[str] = []
    read_file = AsyncDashboard.read_file

    async def flaky(self: AsyncDashboard, node: str, filename: str, **kw: Any) -> bytes | None:
        calls.append(filename)
        if len(calls) == 1:
            raise ClusterUnreachableError("GET of the log file timed out (injected by the test)")
        return await read_file(self, node, filename, **kw)

    monkeypatch.setattr(AsyncDashboard, "read_file", flaky)
    job_id = executor.submit("jobsapi_actions.Sleep", {"seconds": 1})  # polled while it runs
    assert executor.get_result(job_id, timeout=120) == "woke"
    assert len(calls) == 2  # the failed look, then the verdict's read after the end


def test_an_outcome_file_this_submission_did_not_write_is_not_its_outcome(
    executor: RayJobsApiExecutor, ray_cluster: Any
) -> None:
    # A file already under the job's name in the node's log dir (an earlier job's under a reused
    # id; written here by the test) names another run: the job's result is its own, and a job
    # that dies without writing one gets its own error, not the file's. (A guard against mix-ups,
    # not against forgery: the run is visible in the job's entrypoint.)
    from raydrive.drivers.ray_jobs_api.wire import Outcome, RemoteError, result_filename

    (logs,) = {p.resolve() for p in Path(ray_cluster.temp_dir).glob("session_*/logs")}

    def planted(forged: Outcome) -> str:
        """A fresh job id with ``forged`` already in the log dir under its outcome's name."""
        job_id = f"planted_{uuid.uuid4().hex[:12]}"
        path = logs / result_filename(job_id)
        path.parent.mkdir(exist_ok=True)
        path.write_text(forged.pack())
        return job_id

    other = "raydrive_payload_other"
    job_id = planted(Outcome(True, {"total": -1}, run=other))
    submitted = executor.submit("jobsapi_actions.Add", {"a": 10}, job_id=job_id)
    assert executor.get_result(submitted, timeout=120) == {"total": 11}
    error = RemoteError.from_exception(RuntimeError("not this job's"), "execution")
    job_id = planted(Outcome(False, error=error, run=other))
    with pytest.raises(ActorDiedError, match="code 3"):
        executor.get_result(executor.submit("jobsapi_actions.Die", {}, job_id=job_id), timeout=120)


def test_what_the_action_leaves_open_is_flushed_when_the_job_exits(
    executor: RayJobsApiExecutor, tmp_path: Path
) -> None:
    # The entry freezes its own imports for the collector (a faster exit); the action's objects
    # are not frozen, so a file that only the collector's last pass at exit closes is flushed.
    path = tmp_path / "unflushed.txt"
    job_id = executor.submit("jobsapi_actions.Unflushed", {"path": str(path)})
    assert executor.get_result(job_id, timeout=120) == "left open"
    assert path.read_text() == "flushed at exit"


# --- failures ---------------------------------------------------------------------------------
def test_action_failure_raises_with_the_remote_traceback(executor: RayJobsApiExecutor) -> None:
    job_id = executor.submit("jobsapi_actions.Boom", {"message": "it broke"})
    with pytest.raises(ExecutionError) as info:
        executor.get_result(job_id, timeout=120)
    err = info.value
    assert err.error_type == "RuntimeError"
    assert err.error_message == "it broke"
    assert err.job_id == job_id
    assert "raise RuntimeError(self.params.message)" in err.remote_traceback
    assert "it broke" in str(err)
    with pytest.raises(ExecutionError):
        executor.wait(job_id)
    assert executor.get_status(job_id) == "FAILED"
    assert "RuntimeError: it broke" in executor.get_logs(job_id)


def test_remote_import_error_and_process_death(executor: RayJobsApiExecutor) -> None:
    missing = executor.submit("jobsapi_actions.Missing", {})
    died = executor.submit("jobsapi_actions.Die", {})
    with pytest.raises(ActionImportError) as info:
        executor.get_result(missing, timeout=120)
    assert "jobsapi_actions.Missing" in str(info.value)
    with pytest.raises(ActorDiedError) as death:
        executor.get_result(died, timeout=120)
    assert "code 3" in str(death.value)


def test_a_job_python_without_raydrive_is_explained(ray_cluster: Any, plugin_dir: Path) -> None:
    base = str(Path(sys.base_prefix) / "bin" / "python3")
    probe = subprocess.run([base, "-c", "import raydrive"], capture_output=True, cwd=plugin_dir)
    if probe.returncode == 0:
        pytest.skip("the base interpreter has raydrive too")
    ex = make_executor(ray_cluster, plugin_dir, python_executable=base)
    job_id = ex.submit("jobsapi_actions.Add", {"a": 1})
    with pytest.raises(ActorDiedError, match="include_sdk=True"):
        ex.get_result(job_id, timeout=120)


def test_local_validation_before_anything_is_submitted(executor: RayJobsApiExecutor) -> None:
    with pytest.raises(ValidationError):
        executor.submit("jobsapi_actions.Add", {"a": "not a number"})


def test_unknown_job_ids(executor: RayJobsApiExecutor) -> None:
    for call in (
        executor.get_result,
        executor.get_status,
        executor.get_logs,
        executor.stop,
        executor.delete,
        lambda job_id: list(executor.stream_logs(job_id)),
    ):
        with pytest.raises(JobNotFoundError):
            call("raydrive-no-such-job")


def test_timeout_of_get_result(executor: RayJobsApiExecutor) -> None:
    job_id = executor.submit("jobsapi_actions.Sleep", {"seconds": 60})
    with pytest.raises(ExecutionTimeoutError):
        executor.get_result(job_id, timeout=0.5)
    executor.stop(job_id)


# --- stop, delete, ids ------------------------------------------------------------------------
def test_stop_kills_the_process_and_delete_removes_the_record(executor: RayJobsApiExecutor) -> None:
    import psutil

    job_id = executor.submit("jobsapi_actions.Sleep", {"seconds": 120})
    pid = None
    for line in executor.stream_logs(job_id, timeout=120):
        if line.startswith("pid "):
            pid = int(line.split()[1])
            break
    assert pid is not None and psutil.pid_exists(pid)
    with pytest.raises(RaydriveError, match="stop it first"):
        executor.delete(job_id)
    assert executor.stop(job_id) is True
    wait_for(lambda: executor.get_status(job_id) == "STOPPED", 30, "the stopped job's status")

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, 30, f"the action's process {pid} to end after stop()")
    with pytest.raises(ExecutionError) as info:
        executor.get_result(job_id)
    assert info.value.error_type == "STOPPED"
    assert executor.stop(job_id) is False
    assert executor.delete(job_id) is True
    with pytest.raises(JobNotFoundError):
        executor.get_status(job_id)


def test_duplicate_job_id_is_refused(executor: RayJobsApiExecutor) -> None:
    job_id = f"raydrive-dup-{uuid.uuid4().hex[:8]}"
    assert executor.submit("jobsapi_actions.Add", {"a": 1}, job_id=job_id) == job_id
    with pytest.raises(DuplicateJobError):
        executor.submit("jobsapi_actions.Add", {"a": 2}, job_id=job_id)
    assert executor.get_result(job_id, timeout=120) == {"total": 2}
    with pytest.raises(SubmissionError):
        executor.submit("jobsapi_actions.Add", {"a": 2}, job_id="no/slashes")


# --- secrets ----------------------------------------------------------------------------------
def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        # Files come and go while Ray works (virtualenvs of other tests): skip what cannot be read.
        with contextlib.suppress(Exception):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            if needle in data:
                found.append(str(path))
            elif data[:4] == b"PK\x03\x04":
                with zipfile.ZipFile(path) as zf:
                    if any(needle in zf.read(name) for name in zf.namelist()):
                        found.append(f"{path} (zipped)")
    return found


def test_secrets_reach_the_action_but_no_record_of_the_cluster(
    ray_cluster: Any, plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    credential = f"credential-{uuid.uuid4().hex}"
    monkeypatch.setenv("SYNAPSE_ACCESS_TOKEN", credential)  # the credentials policy picks it up
    ex = make_executor(ray_cluster, plugin_dir, env={"MY_API_TOKEN": canary, "PLAIN_SETTING": "visible"})
    keys = ["MY_API_TOKEN", "SYNAPSE_ACCESS_TOKEN", "PLAIN_SETTING"]
    job_id = ex.submit("jobsapi_actions.EnvDigest", {"keys": keys})
    result = ex.get_result(job_id, timeout=120)

    def digest(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()

    expected = {"MY_API_TOKEN": digest(canary), "SYNAPSE_ACCESS_TOKEN": digest(credential)}
    expected["PLAIN_SETTING"] = digest("visible")
    assert result == {"os": expected, "ctx": expected}

    from ray.job_submission import JobSubmissionClient

    shown = [
        str(JobSubmissionClient(ray_cluster.dashboard_url).get_job_info(job_id)),
        httpx.get(f"{ray_cluster.dashboard_url}/api/jobs/").text,
        httpx.get(f"{ray_cluster.dashboard_url}/api/jobs/{job_id}").text,
        ex.get_logs(job_id),
        repr(ex),
    ]
    for text in shown:
        assert canary not in text
        assert credential not in text
    assert "PLAIN_SETTING" in shown[0]  # plain variables do travel in the runtime env
    # The unpacked payload was deleted once read; nothing of the cluster's disk holds a secret.
    session = Path(ray_cluster.temp_dir)
    package = job_json(ray_cluster, job_id)["entrypoint"].split("--payload ")[1].split()[0]
    unpacked = {
        p.resolve() for p in session.glob(f"session_*/runtime_resources/py_modules_files/*/{package}")
    }
    assert len(unpacked) == 1 and not (unpacked.pop() / "payload.json").exists()
    # Where a payload could land: unpacked packages (and their zips), and every log. The scan
    # does find what is there (the shipped action code):
    (wd_files,) = {p.resolve() for p in session.glob("session_*/runtime_resources/working_dir_files")}
    assert _files_holding(wd_files, b"class EnvDigest")
    for kind in ("runtime_resources/py_modules_files", "runtime_resources/working_dir_files", "logs"):
        for where in {p.resolve() for p in session.glob(f"session_*/{kind}")}:
            assert _files_holding(where, canary.encode()) == []
            assert _files_holding(where, credential.encode()) == []


def test_ray_inside_the_action_does_not_pass_the_payload_on(ray_cluster: Any, plugin_dir: Path) -> None:
    ex = make_executor(ray_cluster, plugin_dir, env={"MY_API_TOKEN": f"canary-{uuid.uuid4().hex}"})
    job_id = ex.submit("jobsapi_actions.RayInside", {"keys": ["MY_API_TOKEN"]})
    result = ex.get_result(job_id, timeout=180)
    assert result["driver_sees"] == {"MY_API_TOKEN": True}
    # The job's tasks get the runtime env without the payload package, so no secret either.
    assert result["task_sees"] == {"MY_API_TOKEN": False}
    assert not any("_raydrive_payload_" in m for m in result["py_modules"])


# --- packaging --------------------------------------------------------------------------------
def test_include_sdk_ships_raydrive_as_a_py_module(ray_cluster: Any, plugin_dir: Path) -> None:
    ex = make_executor(ray_cluster, plugin_dir, include_sdk=True)
    job_id = ex.submit("jobsapi_actions.Where", {})
    where = ex.get_result(job_id, timeout=120)
    assert "runtime_resources/py_modules_files" in where["raydrive"]
    assert "runtime_resources/working_dir_files" in where["cwd"]


# --- pre-flight and connection errors -------------------------------------------------------------
def test_infeasible_resources_fail_before_submission(ray_cluster: Any, plugin_dir: Path) -> None:
    ex = make_executor(ray_cluster, plugin_dir, num_gpus=1)
    start = time.monotonic()
    with pytest.raises(InfeasibleResourcesError, match="GPU"):
        ex.submit("jobsapi_actions.Add", {"a": 1}, job_id="raydrive-infeasible")
    assert time.monotonic() - start < 10
    assert httpx.get(f"{ray_cluster.dashboard_url}/api/jobs/raydrive-infeasible").status_code == 404
    ex = make_executor(ray_cluster, plugin_dir, resources={"raydrive_test": 5})
    with pytest.raises(InfeasibleResourcesError, match="raydrive_test"):
        ex.submit("jobsapi_actions.Add", {"a": 1})


def test_unreachable_dashboard_is_named_within_the_connect_timeout(plugin_dir: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    ex = RayJobsApiExecutor(dashboard_address=url, connect_timeout=2)
    with pytest.raises(ClusterUnreachableError, match=re.escape(url)):
        ex.submit("jobsapi_actions.Add", {"a": 1})
    with pytest.raises(ClusterUnreachableError):
        ex.get_status("anything")
    # An address that never answers (TEST-NET-1): bounded by connect_timeout, not the OS's.
    ex = RayJobsApiExecutor(dashboard_address="http://192.0.2.1:8265", connect_timeout=1)
    start = time.monotonic()
    with pytest.raises(ClusterUnreachableError, match=re.escape("192.0.2.1")):
        ex.get_status("anything")
    assert time.monotonic() - start < 5


class _Refuse(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 401 if "Authorization" not in self.headers else 403
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"Unauthorized: Missing authentication token")

    def log_message(self, *args: Any) -> None:
        pass


def test_token_auth_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
        monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        with pytest.raises(SubmissionError, match="RAY_AUTH_TOKEN") as info:
            RayJobsApiExecutor(dashboard_address=url).get_status("x")
        assert "no token was sent" in str(info.value)
        secret = f"tok-{uuid.uuid4().hex}"
        monkeypatch.setenv("RAY_AUTH_TOKEN", secret)
        with pytest.raises(SubmissionError, match="RAY_AUTH_TOKEN") as info:
            RayJobsApiExecutor(dashboard_address=url).get_status("x")
        assert "refused" in str(info.value)
        assert secret not in str(info.value)
    finally:
        server.shutdown()


def test_token_auth_cluster_for_real(
    plugin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second cluster with Ray's token authentication: refused without, works with the token."""
    from raydrive.drivers.ray.cluster import LocalCluster

    token = uuid.uuid4().hex + uuid.uuid4().hex

    class TokenCluster(LocalCluster):
        def _ready(self) -> bool:
            # /api/version needs the token on such a cluster.
            from raydrive.drivers.ray.cluster import _port_open

            if not (_port_open(self.gcs_port or 0) and _port_open(self.client_port or 0)):
                return False
            try:
                response = httpx.get(
                    f"{self.dashboard_url}/api/version", headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError:
                return False
            return response.status_code == 200

    # Only the cluster's processes get these (they copy os.environ when started). HOME is private
    # so that nothing can write a token into the real ~/.ray.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    monkeypatch.setenv("HOME", str(tmp_path))
    cluster = TokenCluster(num_cpus=1, log_file=str(tmp_path / "head.log"))
    try:
        cluster.start()
    except ClusterUnreachableError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"a token-auth cluster did not start here: {exc}")
    monkeypatch.delenv("RAY_AUTH_MODE")
    try:
        monkeypatch.delenv("RAY_AUTH_TOKEN")
        with pytest.raises(SubmissionError, match="RAY_AUTH_TOKEN"):
            make_executor(cluster, plugin_dir).submit("jobsapi_actions.Add", {"a": 1})
        monkeypatch.setenv("RAY_AUTH_TOKEN", token)
        ex = make_executor(cluster, plugin_dir)
        job_id = ex.submit("jobsapi_actions.Add", {"a": 1, "b": 1})
        assert ex.get_result(job_id, timeout=120) == {"total": 2}
        assert any(line.startswith("[PROGRESS]") for line in ex.stream_logs(job_id, timeout=60))
        headers = ex._dashboard().api.headers
        assert token not in json.dumps(
            httpx.get(f"{cluster.dashboard_url}/api/jobs/{job_id}", headers=headers).json()
        )
    finally:
        cluster.stop()


# --- options and imports ----------------------------------------------------------------------
def test_options_are_validated_and_repr_hides_values() -> None:
    with pytest.raises(InvalidOptionsError, match="dashbord_address"):
        RayJobsApiExecutor(dashbord_address="http://x:8265")
    with pytest.raises(InvalidOptionsError, match="dashboard_address"):
        RayJobsApiExecutor(dashboard_address="ray://head:10001")
    ex = RayJobsApiExecutor(
        dashboard_address="head:8265/",
        headers={"Authorization": "Bearer hidden-value"},
        env={"X_TOKEN": "also-hidden"},
        num_cpus=1.5,
    )
    assert ex.dashboard_address == "http://head:8265"
    assert "hidden-value" not in repr(ex) and "also-hidden" not in repr(ex)
    assert "Authorization" in repr(ex)


def test_importing_and_listing_drivers_does_not_import_ray() -> None:
    code = (
        "import sys, raydrive\n"
        "from raydrive.drivers.ray_jobs_api import RayJobsApiExecutor, JobsApiOptions\n"
        "from raydrive.drivers.ray_jobs_api import entry\n"
        "names = [d.name for d in raydrive.available_drivers()]\n"
        "RayJobsApiExecutor(dashboard_address='http://127.0.0.1:1')\n"
        "assert 'ray-jobs-api' in names, names\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


# --- last: the runtime env that could not be set up (submitted by the first test) ---------------
def test_runtime_env_setup_failure_ends_failed_and_says_why(setup_failure: Any) -> None:
    ex, job_id, submitted = setup_failure
    lines = list(ex.stream_logs(job_id, timeout=240))
    assert time.monotonic() - submitted < 240
    assert ex.get_status(job_id) == "FAILED"
    text = "".join(lines)
    assert "runtime_env setup failed" in text
    assert "raydrive-no-such-package" in text
    with pytest.raises(ExecutionError) as info:
        ex.get_result(job_id)
    assert info.value.error_type == "RuntimeEnvSetupError"
    assert "setting up the runtime environment" in str(info.value)
    assert "raydrive-no-such-package" in str(info.value)
    assert "runtime_env setup failed" in ex.get_logs(job_id)
