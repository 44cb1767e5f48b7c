"""One test per hookspec (named for it), third-party plugins, and the operator switches."""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

import pluggy
import pytest

import raydrive
from raydrive import hookspecs
from raydrive.core.options import RayOptions
from raydrive.core.plugins import PluginManager
from raydrive.core.policy_types import (
    EnvironmentRequest,
    PackageSet,
    PackagingRequest,
    ResourceRequest,
)
from raydrive.core.runtime_env import RuntimeEnvBuilder
from raydrive.drivers.ray.resources import resource_request
from tests.actions_for_tests import AddAction

SPECS = sorted(name for name in dir(hookspecs) if name.startswith("raydrive_"))
SITE = Path(__file__).parent / "plugins_data" / "site"


def build(tmp_path, pm, **options):
    return RuntimeEnvBuilder(RayOptions(**options), plugins=pm).build(os_environ={})


def test_every_hookspec_has_a_test_named_for_it():
    tests = {name for name in globals() if name.startswith("test_")}
    assert SPECS, "no hookspecs found"
    for spec in SPECS:
        assert f"test_{spec}" in tests, f"hookspec {spec} has no test named test_{spec}"


@pytest.mark.parametrize("spec", SPECS)
def test_hookspec_docstring_documents_every_argument(spec):
    func = getattr(hookspecs, spec)
    doc = inspect.getdoc(func) or ""
    assert doc.splitlines()[0].endswith("."), "one-line summary first"
    for arg in inspect.signature(func).parameters:
        assert f":param {arg}:" in doc, f"{spec} does not document {arg}"
    pm = pluggy.PluginManager("raydrive")
    pm.add_hookspecs(hookspecs)
    assert list(getattr(pm.hook, spec).spec.argnames) == list(inspect.signature(func).parameters)


def test_hookimpl_is_exported_at_the_package_root():
    assert raydrive.hookimpl is hookspecs.hookimpl


def test_raydrive_collect_packages(tmp_path):
    class AddTorch:
        @raydrive.hookimpl
        def raydrive_collect_packages(self, request: PackagingRequest):
            return PackageSet(packages=["torch==2.0.0"], options=["--index-url", "https://mirror"])

    pm = PluginManager()
    pm.register(AddTorch(), name="add-torch")
    env = build(tmp_path, pm, working_dir=tmp_path).runtime_env
    assert env["pip"]["packages"] == ["torch==2.0.0"]
    assert env["pip"]["pip_install_options"] == ["--upgrade", "--index-url", "https://mirror"]


def test_raydrive_package_manager_options(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy\n")

    class NoDeps:
        @raydrive.hookimpl
        def raydrive_package_manager_options(self, manager, packages):
            assert packages == ["numpy"]
            return ["--no-deps"] if manager == "uv" else None

    pm = PluginManager()
    pm.register(NoDeps(), name="no-deps")
    env = build(tmp_path, pm, working_dir=tmp_path, package_manager="uv").runtime_env
    assert env["uv"]["uv_pip_install_options"] == ["--no-cache", "--no-deps"]


def test_raydrive_working_dir_excludes(tmp_path):
    class NoData:
        @raydrive.hookimpl
        def raydrive_working_dir_excludes(self, request):
            return ["data/"]

    pm = PluginManager()
    pm.register(NoData(), name="no-data")
    env = build(tmp_path, pm, working_dir=tmp_path, excludes=["*.ckpt"]).runtime_env
    assert {".git", "__pycache__", "*.pyc", "data/", "*.ckpt"} <= set(env["excludes"])


def test_raydrive_environment(tmp_path):
    class Region:
        @raydrive.hookimpl
        def raydrive_environment(self, request: EnvironmentRequest):
            return {"REGION": "eu-west-1"}

    pm = PluginManager()
    pm.register(Region(), name="region")
    env = build(tmp_path, pm, env={"A": "1"}).runtime_env
    assert env["env_vars"] == {"A": "1", "REGION": "eu-west-1"}


def test_raydrive_credentials(tmp_path):
    class Vault:
        @raydrive.hookimpl
        def raydrive_credentials(self, request, env):
            return {"VAULT_TOKEN": "hvs.planted-secret", "A": "not-overriding"}

    pm = PluginManager()
    pm.register(Vault(), name="vault")
    built = RuntimeEnvBuilder(RayOptions(env={"A": "1"}), plugins=pm).build(os_environ={})
    assert built.secrets == {"VAULT_TOKEN": "hvs.planted-secret"}
    assert built.runtime_env["env_vars"] == {"A": "1"}
    assert "hvs.planted-secret" not in repr(built) and "hvs.planted-secret" not in str(built.runtime_env)
    assert built.env == {"A": "1", "VAULT_TOKEN": "hvs.planted-secret"}


def test_raydrive_secret_names(plugin_manager):
    from raydrive.core.redaction import MASK, is_secret_key, redact, redact_text

    class Vault:
        calls = 0

        @raydrive.hookimpl
        def raydrive_secret_names(self):
            Vault.calls += 1
            return ["vault"]

    assert not is_secret_key("MY_VAULT_ADDR")
    vault = Vault()
    plugin_manager.register(vault, name="vault-names")
    try:
        assert plugin_manager.secret_names() == frozenset({"VAULT"})
        assert is_secret_key("MY_VAULT_ADDR") and is_secret_key("vaultPath")
        assert redact({"MY_VAULT_ADDR": "https://vault:8200"}) == {"MY_VAULT_ADDR": MASK}
        assert redact_text("MY_VAULT_ADDR=https://vault:8200") == f"MY_VAULT_ADDR={MASK}"
        built = RuntimeEnvBuilder(
            RayOptions(env={"MY_VAULT_ADDR": "v", "A": "1"}), plugins=plugin_manager
        ).build(os_environ={})
        assert built.secrets == {"MY_VAULT_ADDR": "v"} and built.runtime_env["env_vars"] == {"A": "1"}
        calls = Vault.calls
        for _ in range(100):  # called per key: cached until plugins change
            is_secret_key("MY_VAULT_ADDR")
        assert Vault.calls == calls
    finally:
        plugin_manager.unregister(vault)
    assert not is_secret_key("MY_VAULT_ADDR")


def test_raydrive_adjust_resources():
    from raydrive import ResourceVetoError

    class NoGpus:
        @raydrive.hookimpl
        def raydrive_adjust_resources(self, action, request: ResourceRequest):
            if request.num_gpus:
                raise ResourceVetoError(f"{action} may not use GPUs here")
            request.resources["team-a"] = 1

    pm = PluginManager()
    pm.register(NoGpus(), name="no-gpus")
    request = resource_request(RayOptions(num_cpus=2), "Train", pm)
    assert request.as_ray_options() == {"num_cpus": 2, "resources": {"team-a": 1}}
    with pytest.raises(ResourceVetoError, match="Train may not use GPUs"):
        resource_request(RayOptions(num_gpus=1), "Train", pm)


def test_raydrive_job_submitted(plugin_manager):
    seen = []

    class Audit:
        @raydrive.hookimpl
        def raydrive_job_submitted(self, event):
            seen.append(event)

    plugin_manager.register(Audit(), name="audit")
    raydrive.get_executor("local").execute(AddAction, {"a": 1}, job_id="audit-1")
    assert [(e.driver, e.job_id, e.action, e.status) for e in seen] == [
        ("local", "audit-1", "AddAction", None)
    ]


def test_raydrive_job_finished(plugin_manager):
    seen = []

    class Audit:
        @raydrive.hookimpl
        def raydrive_job_finished(self, event):
            seen.append(event)

    plugin_manager.register(Audit(), name="audit")
    raydrive.get_executor("local").execute(AddAction, {"a": 1}, job_id="audit-2")
    assert [(e.job_id, e.status, e.error) for e in seen] == [("audit-2", "SUCCEEDED", None)]


def test_misspelt_hook_fails_at_registration():
    class Typo:
        @raydrive.hookimpl
        def raydrive_enviroment(self, request):
            return {}

    with pytest.raises(pluggy.PluginValidationError):
        PluginManager().register(Typo(), name="typo")


def test_builtin_policies_load_through_the_entry_point_group():
    names = {name for name, _ in PluginManager().plugins()}
    assert {
        "requirements",
        "wheels",
        "package-manager-defaults",
        "environment",
        "credentials",
        "default-excludes",
    } <= names


def test_builtin_policy_can_be_blocked(monkeypatch, tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy\n")
    monkeypatch.setenv("RAYDRIVE_DISABLE_PLUGINS", "package-manager-defaults")
    pm = PluginManager()
    assert "package-manager-defaults" not in {name for name, _ in pm.plugins()}
    env = build(tmp_path, pm, working_dir=tmp_path).runtime_env
    assert env["pip"] == {"packages": ["numpy"]}


def test_autoload_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("RAYDRIVE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert PluginManager().plugins() == []


def test_third_party_policy_plugin_from_entry_points(monkeypatch):
    monkeypatch.syspath_prepend(str(SITE))
    try:
        pm = PluginManager()
        assert "rd-cap" in {name for name, _ in pm.plugins()}
        assert pm.distinfo()["rd-cap"] == "rd-thirdparty 0.1.0"
        assert resource_request(RayOptions(num_cpus=8), "A", pm).num_cpus == 1
        built = RuntimeEnvBuilder(RayOptions(env={}), plugins=pm).build(os_environ={})
        assert built.runtime_env["env_vars"] == {"RD_THIRDPARTY_POLICY": "on"}
        monkeypatch.setenv("RAYDRIVE_DISABLE_PLUGINS", "rd-cap")
        assert "rd-cap" not in {name for name, _ in PluginManager().plugins()}
    finally:
        for name in [m for m in sys.modules if m.startswith("rd_")]:
            del sys.modules[name]


def test_tracing_logs_hook_calls_without_secret_values(monkeypatch, caplog):
    monkeypatch.setenv("RAYDRIVE_TRACE_PLUGINS", "1")
    pm = PluginManager()
    with caplog.at_level(logging.INFO, logger="raydrive.plugins"):
        RuntimeEnvBuilder(RayOptions(), plugins=pm).build(
            os_environ={"SYNAPSE_HOST": "h", "SYNAPSE_ACCESS_TOKEN": "tok-planted-123"}
        )
    assert "hook raydrive_credentials called" in caplog.text
    assert "SYNAPSE_ACCESS_TOKEN" in caplog.text
    assert "tok-planted-123" not in caplog.text


def test_has_impls_follows_registration():
    pm = PluginManager()
    assert not pm.has_impls("raydrive_job_finished")

    class Listener:
        @raydrive.hookimpl
        def raydrive_job_finished(self, event):
            pass

    listener = Listener()
    pm.register(listener, name="listener")
    assert pm.has_impls("raydrive_job_finished")
    pm.unregister(listener)
    assert not pm.has_impls("raydrive_job_finished")
