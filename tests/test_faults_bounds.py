"""Waits that must end within their bound: a fresh ray-actor actor that Ray cannot place, a
retry policy refused before anything runs, a local cluster usable as soon as start() returns."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from raydrive import ExecutionTimeoutError, RaydriveError, get_executor
from tests.actions_faults import EndlessRetriesAction, QuickAction

pytestmark = pytest.mark.ray


def test_local_cluster_start_returns_once_the_head_node_is_registered(tmp_path):
    from raydrive.drivers.ray.cluster import LocalCluster

    with LocalCluster(num_cpus=1, log_file=str(tmp_path / "head.log")) as cluster:
        # Right after start(): the GCS already knows the head's raylet (a first call can run).
        with urllib.request.urlopen(f"{cluster.dashboard_url}/api/v0/nodes", timeout=30) as answer:
            nodes = json.load(answer)["data"]["result"]["result"]
        assert [n["state"] for n in nodes] == ["ALIVE"]


def test_ray_actor_wait_for_a_fresh_actor_is_bounded_by_timeout_s(ray_cluster, tmp_path):
    import ray

    from raydrive.drivers.ray.connection import connect

    connect(ray_cluster.address)

    @ray.remote(num_cpus=0, resources={"raydrive_test": 4})
    class Hog:
        def ready(self) -> bool:
            return True

    hog = Hog.remote()  # holds every unit of the resource the executor's actor asks for
    ray.get(hog.ready.remote(), timeout=120)
    ex = get_executor(
        "ray-actor", ray_address=ray_cluster.address, resources={"raydrive_test": 1}, timeout_s=3
    )
    outcome: dict = {}

    def call() -> None:
        started = time.monotonic()
        try:
            ex.execute(QuickAction, {"dir": str(tmp_path)})
        except Exception as exc:
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - started

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    try:
        caller.join(60)
        assert not caller.is_alive(), "execute() waited past 60 s for an actor Ray cannot place"
    finally:
        ray.kill(hog)  # lets a hung call end, before or after the fix
        caller.join(120)
        ex.close()
    assert isinstance(outcome.get("error"), ExecutionTimeoutError), outcome
    assert "start" in str(outcome["error"]) and outcome["took"] < 30


def test_ray_actor_refuses_an_invalid_declared_retry_policy_before_running(ray_cluster, tmp_path):
    with (
        get_executor("ray-actor", ray_address=ray_cluster.address) as ex,
        pytest.raises(RaydriveError, match="retry policy"),
    ):
        ex.execute(EndlessRetriesAction, {"dir": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []  # the action never ran
