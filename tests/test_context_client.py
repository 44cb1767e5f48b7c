"""``self.ctx.client`` on a Ray worker (issue 23): the plugin that provides it is an installed
distribution found through the ``raydrive.plugins`` entry-point group where the action runs,
exactly as a user's plugin would be (the local driver's cases are in tests/test_hookspecs.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import raydrive

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent
MODULE = "rd_ctx_client"
SYNAPSE_ENV = {"SYNAPSE_HOST": "https://synapse.example/", "SYNAPSE_ACCESS_TOKEN": "syn-planted-123"}


def plugin_dist(root: Path) -> Path:
    """A working dir holding the plugin module and its dist-info: an installed plugin on the
    worker's ``sys.path``, as ``pip install`` would leave it."""
    shutil.copy(HERE / "actions_context_client.py", root / f"{MODULE}.py")
    info = root / "rd_ctx_client-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rd-ctx-client\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[raydrive.plugins]\nrd-ctx-client = {MODULE}\n")
    return root


def test_ctx_client_on_ray_actor(ray_cluster, tmp_path):
    wd = plugin_dist(tmp_path)
    with raydrive.get_executor(
        "ray-actor", ray_address=ray_cluster.address, working_dir=str(wd), env=SYNAPSE_ENV
    ) as ex:
        result = ex.execute(f"{MODULE}.ClientAction", {"reads": 3})
    assert result["client"] == "BackendClient" and result["base_url"] == "https://synapse.example"
    assert result["same_each_read"] and result["authenticates"]
    assert result["pid"] != os.getpid()  # it ran on the worker, the plugin loaded there


def test_ctx_client_on_ray_actor_without_the_plugin_names_the_hook(ray_cluster, tmp_path):
    shutil.copy(HERE / "actions_context_client.py", tmp_path / f"{MODULE}_bare.py")
    with (
        raydrive.get_executor(
            "ray-actor", ray_address=ray_cluster.address, working_dir=str(tmp_path), env=SYNAPSE_ENV
        ) as ex,
        pytest.raises(raydrive.ExecutionError, match="raydrive_context_client"),
    ):
        ex.execute(f"{MODULE}_bare.ClientAction", {})
