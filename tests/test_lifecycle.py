"""The lifecycle on every driver, against the session's real Ray cluster and a real pipeline service.

Each driver reports ``raydrive_job_submitted`` once and ``raydrive_job_finished`` exactly once per
job, with the same action name at both ends and a JobState value, however often the job is read
afterwards; another executor reading the same job reports nothing. ``cancel`` on every
asynchronous driver: True for a job that has not ended, False once it has (or for an unknown id).
The resources hooks run once per submission on every driver that places a process.

One executor per driver for the whole module (a module-scoped fixture, parametrized indirectly).
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import raydrive
from raydrive import ExecutionError, JobState
from raydrive.core.executor import BaseExecutor
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import JobEvent, ResourceRequest
from raydrive.core.status import job_state
from tests.conditions import wait_for
from tests.plugin_dirs import plugin_module_dir

MODULE = "rd_lifecycle_actions"
ACTIONS = '''
import time
from pathlib import Path

from pydantic import BaseModel

from raydrive import BaseAction


class AddParams(BaseModel):
    a: int
    b: int = 1


class Add(BaseAction[AddParams]):
    def execute(self):
        return {"total": self.params.a + self.params.b}


class BoomParams(BaseModel):
    message: str = "boom"


class Boom(BaseAction[BoomParams]):
    def execute(self):
        raise RuntimeError(self.params.message)


class HoldParams(BaseModel):
    started: str
    release: str
    seconds: float = 120.0


class Hold(BaseAction[HoldParams]):
    """Writes ``started``, then runs until ``release`` exists (or ``seconds`` pass)."""

    def execute(self):
        Path(self.params.started).write_text("started")
        deadline = time.monotonic() + self.params.seconds
        while time.monotonic() < deadline and not Path(self.params.release).exists():
            time.sleep(0.05)
        return "released"
'''
ADD, BOOM, HOLD = (f"{MODULE}.{name}" for name in ("Add", "Boom", "Hold"))

RAY_DRIVERS = ["ray-actor", "ray-job", "ray-jobs-api", "ray-pipeline"]
ALL = [pytest.param("local", id="local")]
ALL += [pytest.param(n, id=n, marks=pytest.mark.ray) for n in RAY_DRIVERS]
ASYNC = [p for p in ALL if p.values[0] != "ray-actor"]
SHARED = [p for p in ASYNC if p.values[0] != "local"]  # jobs another executor can look up
STATES = {state.value for state in JobState}


def _with_local() -> list[Any]:
    """Every asynchronous driver: ``local`` and the shared Ray ones."""
    return [pytest.param("local", id="local"), *SHARED]


class LocalHoldParams(BaseModel):
    started: str
    release: str


class LocalHold(raydrive.BaseAction[LocalHoldParams]):
    """Writes ``started``, then runs until ``release`` exists (a local job to queue others behind)."""

    def execute(self) -> str:
        Path(self.params.started).write_text("started")
        wait_for(Path(self.params.release).exists, timeout=60, what="the release file")
        return "released"


class Recorder:
    """Records the lifecycle events and the resources-hook calls of one executor."""

    def __init__(self) -> None:
        self.events: list[tuple[str, JobEvent]] = []
        self.resource_calls: list[str] = []

    @raydrive.hookimpl
    def raydrive_job_submitted(self, event: JobEvent) -> None:
        self.events.append(("submitted", event))

    @raydrive.hookimpl
    def raydrive_job_finished(self, event: JobEvent) -> None:
        self.events.append(("finished", event))

    @raydrive.hookimpl
    def raydrive_adjust_resources(self, action: str, request: ResourceRequest) -> None:
        self.resource_calls.append(action)

    def of(self, job_id: str) -> list[tuple[str, JobEvent]]:
        return [(kind, event) for kind, event in self.events if event.job_id == job_id]


@dataclass
class Driver:
    name: str
    executor: Any
    recorder: Recorder
    make: Any  # makes another executor of this driver, with its own recorder
    closers: list[Any] = field(default_factory=list)

    # One way to run a job on each driver, so that the tests read alike.
    def submit(self, action: str, params: dict[str, Any]) -> str:
        if self.name == "ray-pipeline":
            return self.executor.submit([action], params, name=f"lc-{action.rpartition('.')[2]}")
        return self.executor.submit(action, params)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The working dir of every executor here, importable here too (params validate locally)."""
    with plugin_module_dir(tmp_path_factory, textwrap.dedent(ACTIONS), MODULE) as root:
        yield root


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from raydrive.service.server import ServiceServer

    with ServiceServer(db=tmp_path_factory.mktemp("lifecycle_svc") / "runs.db") as server:
        yield server


@pytest.fixture(scope="module")
def driver(request: pytest.FixtureRequest, plugin_dir: Path) -> Iterator[Driver]:
    name = request.param
    options: dict[str, Any] = {"working_dir": plugin_dir}
    if name != "local":
        cluster = request.getfixturevalue("ray_cluster")
        if name == "ray-jobs-api":
            options.update(dashboard_address=cluster.dashboard_url, python_executable=sys.executable)
        else:
            options["ray_address"] = cluster.address
        if name == "ray-pipeline":
            options.update(
                pipeline_service_url=request.getfixturevalue("service").url,
                progress_interval=0.05,
                cancel_poll_interval=0.1,
            )

    def make() -> tuple[Any, Recorder]:
        recorder, plugins = Recorder(), PluginManager()
        plugins.register(recorder, name="lifecycle-recorder")
        return raydrive.get_executor(name, plugins=plugins, **options), recorder

    executor, recorder = make()
    made = Driver(name, executor, recorder, make)
    try:
        yield made
    finally:
        for close in [executor.close, *made.closers]:
            close()


def _assert_once(recorder: Recorder, job_id: str, action: str, state: JobState, driver: str) -> None:
    events = recorder.of(job_id)
    assert [kind for kind, _ in events] == ["submitted", "finished"], events
    (_, submitted), (_, finished) = events
    assert submitted.action == finished.action == action
    assert submitted.driver == finished.driver == driver
    assert submitted.status is None and finished.status in STATES
    assert finished.status == state.value


def _read_often(d: Driver, job_id: str, ok: bool) -> None:
    """Every reader, twice: none of them reports the job again."""
    ex = d.executor
    for _ in range(2):
        if ok:
            assert ex.get_result(job_id, timeout=120) == {"total": 3}
            waited = ex.wait(job_id, timeout_seconds=120)
            assert waited == "SUCCEEDED" or job_state(waited.status) is JobState.SUCCEEDED
        else:
            with pytest.raises(ExecutionError):
                ex.get_result(job_id, timeout=120)
            with pytest.raises(ExecutionError):
                ex.wait(job_id, timeout_seconds=120)
        wanted = JobState.SUCCEEDED if ok else JobState.FAILED
        assert job_state(ex.get_status(job_id)) is wanted


# --- submitted once, finished once, same name ---------------------------------------------------
@pytest.mark.parametrize("driver", ALL, indirect=True)
def test_a_success_is_reported_once_with_the_same_name(driver: Driver) -> None:
    # Also: the resources hooks ran once for the submission (none on local, which places nothing),
    # and cancel of the ended job is False.
    calls = driver.recorder.resource_calls
    before = len(calls)
    if driver.name == "ray-actor":
        job_id = f"lc-ok-{uuid.uuid4().hex[:8]}"
        assert driver.executor.execute(ADD, {"a": 2}, job_id=job_id) == {"total": 3}
        for i in range(2):  # the warm actor is placed once: later calls have no resources step
            driver.executor.execute(ADD, {"a": i})
    else:
        job_id = driver.submit(ADD, {"a": 2})
        _read_often(driver, job_id, ok=True)
        assert driver.executor.cancel(job_id) is False
        assert job_state(driver.executor.get_status(job_id)) is JobState.SUCCEEDED
    action = "lc-Add" if driver.name == "ray-pipeline" else "Add"
    _assert_once(driver.recorder, job_id, action, JobState.SUCCEEDED, driver.name)
    placed = driver.name != "local" and (driver.name != "ray-actor" or before == 0)
    assert calls[before:] == (["Add"] if placed else [])


@pytest.mark.parametrize("driver", ALL, indirect=True)
def test_a_failure_is_reported_once_with_the_same_name(driver: Driver) -> None:
    if driver.name == "ray-actor":
        job_id = f"lc-boom-{uuid.uuid4().hex[:8]}"
        with pytest.raises(ExecutionError, match="lifecycle boom"):
            driver.executor.execute(BOOM, {"message": "lifecycle boom"}, job_id=job_id)
    else:
        job_id = driver.submit(BOOM, {"message": "lifecycle boom"})
        _read_often(driver, job_id, ok=False)
    action = "lc-Boom" if driver.name == "ray-pipeline" else "Boom"
    _assert_once(driver.recorder, job_id, action, JobState.FAILED, driver.name)
    finished = driver.recorder.of(job_id)[1][1]
    assert finished.error and "lifecycle boom" in finished.error


@pytest.mark.parametrize("driver", SHARED, indirect=True)
def test_a_job_read_by_another_executor_reports_nothing_there(driver: Driver) -> None:
    ok, failed = driver.submit(ADD, {"a": 2}), driver.submit(BOOM, {"message": "elsewhere"})
    other, seen = driver.make()
    driver.closers.append(other.close)
    assert other.get_result(ok, timeout=120) == {"total": 3}
    with pytest.raises(ExecutionError):
        other.wait(failed, timeout_seconds=120)
    for job_id in (ok, failed):
        other.get_status(job_id)
    assert seen.events == []
    # The submitter still reports each job once when it reads it.
    _read_often(driver, ok, ok=True)
    assert [kind for kind, _ in driver.recorder.of(ok)] == ["submitted", "finished"]


# --- cancel: the same meaning on every asynchronous driver ---------------------------------------
@pytest.mark.parametrize(
    "driver",
    _with_local(),
    indirect=True,
)
def test_cancel_is_true_for_a_running_job_and_false_once_it_ended(driver: Driver, tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    job_id = driver.submit(HOLD, {"started": str(started), "release": str(release)})
    try:
        wait_for(started.exists, timeout=120, what=f"the {driver.name} job to start")
        assert driver.executor.cancel(job_id) is True
        wait_for(
            lambda: job_state(driver.executor.get_status(job_id)).is_terminal(),
            timeout=60,
            what="the cancelled job to end",
        )
        assert job_state(driver.executor.get_status(job_id)) is JobState.STOPPED
        assert driver.executor.cancel(job_id) is False
        with pytest.raises(ExecutionError):
            driver.executor.get_result(job_id, timeout=60)
        events = driver.recorder.of(job_id)
        assert [kind for kind, _ in events] == ["submitted", "finished"]
        assert events[1][1].status == JobState.STOPPED.value
    finally:
        release.write_text("go")  # a job that was not stopped ends now


@pytest.mark.parametrize(
    "driver",
    # "False for an unknown id", the same on every asynchronous driver, ray-pipeline included.
    _with_local(),
    indirect=True,
)
def test_cancel_is_false_for_an_unknown_job(driver: Driver) -> None:
    assert driver.executor.cancel(f"never-submitted-{uuid.uuid4().hex[:8]}") is False


@pytest.fixture
def local_queue(tmp_path: Path) -> Iterator[tuple[Any, Recorder, str]]:
    """A local executor with one thread, held by a running job, and a second job queued behind it."""
    from tests.actions_for_tests import AddAction

    recorder, plugins = Recorder(), PluginManager()
    plugins.register(recorder, name="lifecycle-recorder")
    started, release = tmp_path / "started", tmp_path / "release"
    with raydrive.get_executor("local", plugins=plugins, max_workers=1) as ex:
        holder = ex.submit(
            "tests.test_lifecycle.LocalHold", {"started": str(started), "release": str(release)}
        )
        try:
            wait_for(started.exists, timeout=30, what="the first job to start")
            yield ex, recorder, ex.submit(AddAction, {"a": 1})
        finally:
            release.write_text("go")
        assert ex.get_result(holder, timeout=30) == "released"


def test_local_cancel_of_a_job_not_started_yet(local_queue: tuple[Any, Recorder, str]) -> None:
    # The one case a thread pool can cancel: a job still queued behind a running one.
    ex, _, queued = local_queue
    assert ex.cancel(queued) is True
    assert job_state(ex.get_status(queued)) is JobState.STOPPED


def test_local_cancelled_job_ends_once(local_queue: tuple[Any, Recorder, str]) -> None:
    ex, recorder, queued = local_queue
    assert ex.cancel(queued) is True
    assert ex.cancel(queued) is False
    with pytest.raises(ExecutionError):
        ex.get_result(queued, timeout=5)
    events = recorder.of(queued)
    assert [(kind, event.status) for kind, event in events] == [("submitted", None), ("finished", "STOPPED")]


def test_the_old_emit_finished_call_shape_is_refused_not_reported_as_unknown() -> None:
    # Before the redesign a driver called _emit_finished(job_id, action, status); with the new
    # (job_id, status, error) that call would report status UNKNOWN without a word.
    class OldStyle(BaseExecutor):
        name = "old-style"

    seen = Recorder()
    pm = PluginManager()
    pm.register(seen)
    executor = OldStyle(plugins=pm)
    executor._emit_submitted("j1", "tests.Add")
    with pytest.raises(TypeError, match=r"action name 'tests\.Add' as the status"):
        executor._emit_finished("j1", "tests.Add", "SUCCEEDED")
    assert executor._emit_finished("j1", "SUCCEEDED") is True  # still tracked: the right call reports
    assert [(kind, e.status) for kind, e in seen.events] == [("submitted", None), ("finished", "SUCCEEDED")]


def test_the_unfinished_jobs_table_is_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A process that submits forever and never reads an outcome must not grow without bound.
    import raydrive.core.executor as executor_module

    class Capped(BaseExecutor):
        name = "capped"

    monkeypatch.setattr(executor_module, "MAX_TRACKED_JOBS", 3)
    executor = Capped(plugins=PluginManager())
    with caplog.at_level("WARNING", logger="raydrive"):
        for i in range(6):
            executor._emit_submitted(f"j{i}", "tests.Add")
    assert executor._unfinished_jobs() == ["j3", "j4", "j5"]
    assert executor._unfinished_jobs(2) == ["j3", "j4"]
    warnings = [r.getMessage() for r in caplog.records if "never read" in r.getMessage()]
    assert len(warnings) == 1 and "(j0)" in warnings[0]  # said once, naming the first forgotten
    assert executor._emit_finished("j0", "SUCCEEDED") is False  # forgotten: nothing reported
    assert executor._emit_finished("j5", "SUCCEEDED") is True


@pytest.mark.parametrize("driver", ["ray-job"], indirect=True)
def test_deleting_a_job_never_read_reports_it_finished_first(driver: Driver) -> None:
    job_id = driver.submit(ADD, {"a": 2})
    # delete answers False while the job runs; once it is True the job is gone from the registry.
    wait_for(lambda: driver.executor.delete(job_id), timeout=120, what="the job to end and be deleted")
    _assert_once(driver.recorder, job_id, "Add", JobState.SUCCEEDED, driver.name)
    assert not driver.executor._is_unfinished(job_id)
