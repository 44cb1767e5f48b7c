"""A real two-node Ray cluster on loopback for the multi-node tests (session scope).

The head is a :class:`LocalCluster`; the second node is started through Ray's node API, the way
``ray.cluster_utils.Cluster.add_node`` does (``ray start --address`` refuses to add a node with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``): on 127.0.0.1, with its own ports and temp dir, and a
custom resource ``second_node`` so work can be pinned to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SECOND = "second_node"


class TwoNodeCluster:
    """The head (a LocalCluster) and a replaceable second node."""

    def __init__(self, head: Any, temp_root: Path) -> None:
        self.head = head
        self.temp_root = temp_root
        self.second: Any = None
        self._count = 0

    @property
    def address(self) -> str:
        return self.head.address

    def add_second_node(self, timeout: float = 120) -> Any:
        """Start a second node (resource ``second_node``) and wait until the GCS sees it alive."""
        from ray._private.node import Node
        from ray._private.parameter import RayParams

        self._count += 1
        temp_dir = self.temp_root / f"n{self._count}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        params = RayParams(
            gcs_address=self.head.address,
            node_ip_address="127.0.0.1",
            num_cpus=1,
            num_gpus=0,
            resources={SECOND: 10},
            object_store_memory=100 * 1024 * 1024,
            min_worker_port=0,
            max_worker_port=0,
            node_manager_port=0,
            include_log_monitor=False,
            temp_dir=str(temp_dir),
        )
        node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
        self.second = node
        self._wait_alive(node.node_id, timeout)
        return node

    def _wait_alive(self, node_id: str, timeout: float) -> None:
        import ray

        from raydrive.drivers.ray.connection import connect

        connect(self.head.address, timeout=60)  # the address the tests use: reused by them
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(n["Alive"] and n["NodeID"] == node_id for n in ray.nodes()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the second node {node_id} did not come up within {timeout} s")

    def kill_second_raylet(self) -> None:
        """SIGKILL the second node's raylet (what a machine crash looks like to Ray)."""
        node = self.second
        node.kill_raylet(check_alive=False)  # Ray's node API sends SIGKILL

    def stop_second(self) -> None:
        node, self.second = self.second, None
        if node is not None:
            node.kill_all_processes(check_alive=False, allow_graceful=False)


@pytest.fixture(scope="module", autouse=True)
def _own_connection() -> Iterator[None]:
    """Ray allows one cluster per process: these modules use the two-node cluster, the others
    the session's ``ray_cluster``, so the connection is dropped before and after each module."""
    from raydrive.drivers.ray.connection import disconnect

    disconnect()
    yield
    disconnect()


@pytest.fixture(scope="session")
def two_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodeCluster]:
    from raydrive.drivers.ray.cluster import LocalCluster

    root = tmp_path_factory.mktemp("multinode")
    head = LocalCluster(num_cpus=1, log_file=str(root / "head.log"))
    head.start()
    cluster = TwoNodeCluster(head, root)
    try:
        cluster.add_second_node()
        yield cluster
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            cluster.stop_second()
        finally:
            head.stop()
