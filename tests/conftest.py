"""Shared fixtures: one real local Ray cluster on loopback per test session, plugin isolation."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Every Ray process the tests start, and every client in this process, binds to loopback.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.pop("RAY_ADDRESS", None)

from raydrive.core.plugins import PluginManager, reset_plugin_manager


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real single-node Ray cluster with dashboard and client server, on 127.0.0.1."""
    from raydrive.drivers.ray.cluster import LocalCluster

    log = tmp_path_factory.mktemp("ray") / "ray-head.log"
    cluster = LocalCluster(num_cpus=2, resources={"raydrive_test": 4}, log_file=str(log))
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            cluster.stop()


@pytest.fixture
def plugin_manager() -> Iterator[PluginManager]:
    """A fresh process-wide plugin manager (entry points loaded), restored afterwards."""
    manager = PluginManager()
    reset_plugin_manager(manager)
    try:
        yield manager
    finally:
        reset_plugin_manager(None)
