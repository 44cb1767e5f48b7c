"""Every example runs: the ML plugin's actions, the third-party driver and the policy plugin,
the last two installed for real (pip, into a private target dir put on sys.path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import raydrive
from raydrive import ExecutionError, ResourceVetoError, ValidationError
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.registry import DriverRegistry
from raydrive.drivers.ray.resources import resource_request

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ML_PLUGIN = EXAMPLES / "ml_plugin"


@pytest.fixture(scope="module")
def installed_examples(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    for name in ("subprocess_driver", "gpu_cap_policy"):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "--target", str(target), str(EXAMPLES / name)],
            check=True,
        )  # fmt: skip
    return target


@pytest.fixture
def on_path(installed_examples, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_examples))
    DriverRegistry.refresh()
    yield
    DriverRegistry.refresh()
    for name in [m for m in sys.modules if m.startswith(("raydrive_subprocess", "raydrive_gpu_cap"))]:
        del sys.modules[name]


def run_pipeline_locally(executor):
    from ml_plugin.actions import PIPELINE

    params: dict = {"n_samples": 200, "seed": 3}
    for action in PIPELINE:
        params.update(executor.execute(action, params))
    return params


def test_ml_plugin_pipeline_learns_through_the_local_driver(monkeypatch):
    monkeypatch.syspath_prepend(str(ML_PLUGIN))
    final = run_pipeline_locally(raydrive.get_executor("local", working_dir=ML_PLUGIN))
    assert final["r2"] > 0.95 and final["mse"] < 0.1
    assert len(final["weights"]) == 3


def test_third_party_subprocess_driver(on_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ML_PLUGIN))
    assert "subprocess" in [d.name for d in raydrive.available_drivers()]
    executor = raydrive.get_executor("subprocess", working_dir=ML_PLUGIN, timeout=120)
    assert type(executor).__module__ == "raydrive_subprocess"
    final = run_pipeline_locally(executor)
    assert final["r2"] > 0.95
    with pytest.raises(ValidationError):
        executor.execute("ml_plugin.actions.TrainAction", {"epochs": 3})  # no dataset: worker-side
    with pytest.raises(ExecutionError, match=r"died \(exit code 3\)"):
        executor.execute("tests.actions_for_tests.ExitAction", {"code": 3})


def test_policy_plugin_caps_gpus_and_tags_team(on_path, monkeypatch):
    monkeypatch.setenv("RAYDRIVE_MAX_GPUS", "1")
    monkeypatch.setenv("RAYDRIVE_TEAM", "vision")
    pm = PluginManager()
    assert "gpu-cap" in dict(pm.plugins())
    request = resource_request(RayOptions(num_gpus=1), "Train", pm)
    assert request.resources == {"team:vision": 0.001}
    with pytest.raises(ResourceVetoError, match="at most 1"):
        resource_request(RayOptions(num_gpus=2), "Train", pm)
    from raydrive.core.runtime_env import RuntimeEnvBuilder

    built = RuntimeEnvBuilder(RayOptions(env={}), plugins=pm).build(os_environ={})
    assert built.runtime_env["env_vars"] == {"TEAM": "vision"}
