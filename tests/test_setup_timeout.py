"""``setup_timeout_s``: a runtime env whose setup hangs fails with a clear error and the setup log's tail.

The requirement hangs for real: pip's index is a local TCP server on 127.0.0.1 that accepts
connections and never answers, and pip itself is told to wait 600 s with no retries, so the only
bound that can fire is Ray's ``setup_timeout_seconds`` (what ``setup_timeout_s`` becomes).

The cluster here is this module's own, started with ``RUNTIME_ENV_RETRY_TIMES=1``: Ray otherwise
tries a failed setup three times, each bounded by the timeout, which only makes the test slower.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from raydrive import ExecutionError
from raydrive.core.options import RayOptions
from raydrive.core.runtime_env import RuntimeEnvBuilder
from raydrive.drivers.ray_actor import RayActorExecutor
from raydrive.drivers.ray_job import RayJobExecutor
from tests.actions_for_tests import AddAction

pytestmark = pytest.mark.ray

# Ray first clones the submitter's virtualenv for pip (the whole venv: 10-30 s on a loaded CI
# machine), then runs pip against the silent index. The bound may fire in either step; the
# assertions hold wherever it fires, and the test prints whether pip had reached the index.
SETUP_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    import ray

    from raydrive.drivers.ray.cluster import LocalCluster

    # Ray allows one cluster per process: leave the session's cluster (later tests reconnect to
    # it on their own: executors connect lazily) while this module uses its own.
    if ray.is_initialized():
        ray.shutdown()
    log = tmp_path_factory.mktemp("ray-setup") / "ray-head.log"
    local = LocalCluster(num_cpus=2, env={"RUNTIME_ENV_RETRY_TIMES": "1"}, log_file=str(log))
    local.start()
    try:
        yield local
    finally:
        if ray.is_initialized():
            ray.shutdown()
        local.stop()


class SilentIndex:
    """A TCP server that accepts connections and never answers (a package index that hangs)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple"

    def close(self) -> None:
        self._server.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def silent_index() -> Iterator[SilentIndex]:
    index = SilentIndex()
    yield index
    index.close()


def _hanging_options(index: SilentIndex) -> dict:
    # A package name of its own per test: Ray caches a failed env for 10 minutes.
    return {
        "runtime_env": {"pip": [f"raydrive-never-{uuid.uuid4().hex[:10]}"]},
        "package_manager_options": ["--index-url", index.url, "--timeout", "600", "--retries", "0"],
        "setup_timeout_s": SETUP_TIMEOUT_S,
    }


def _assert_clear(error: ExecutionError, index: SilentIndex) -> None:
    text = str(error)
    print(f"pip connected to the silent index {len(index.connections)} time(s); error:\n{text[-3000:]}")
    assert error.error_type == "RuntimeEnvSetupError"
    assert "setup timeout (setup_timeout_s)" in text and "the action did not run" in text
    assert f"timeout of {SETUP_TIMEOUT_S} seconds" in text  # Ray's own words: its bound fired
    assert "runtime_env_setup-" in text and "last lines" in text  # the setup log's tail


def test_the_builder_puts_the_bound_in_ray_config():
    built = RuntimeEnvBuilder(
        RayOptions(setup_timeout_s=2.5, runtime_env={"config": {"eager_install": False}})
    ).build()
    assert built.runtime_env["config"] == {"eager_install": False, "setup_timeout_seconds": 3}
    assert "config" not in RuntimeEnvBuilder(RayOptions()).build().runtime_env


def test_ray_actor_setup_that_hangs_fails_clearly(cluster, silent_index):
    executor = RayActorExecutor(ray_address=cluster.address, **_hanging_options(silent_index))
    try:
        with pytest.raises(ExecutionError) as info:
            executor.execute(AddAction, {"a": 1})
        _assert_clear(info.value, silent_index)
        assert executor.actor_name is None  # the half-started actor was not kept
    finally:
        executor.shutdown()


def test_ray_job_setup_that_hangs_fails_clearly(cluster, silent_index):
    with RayJobExecutor(ray_address=cluster.address, **_hanging_options(silent_index)) as executor:
        job_id = executor.submit(AddAction, {"a": 1})
        with pytest.raises(ExecutionError) as info:
            executor.get_result(job_id, timeout=SETUP_TIMEOUT_S * 6)
        _assert_clear(info.value, silent_index)
        assert executor.get_status(job_id) == "FAILED"
