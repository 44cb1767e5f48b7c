"""``~`` in every path option of every registered driver is expanded, as a shell would.

The path options are found by their annotation (a ``Path``, or the ``bool | str`` path-or-flag of
TLS ``verify``), so an option added later is checked without touching this file; a field whose
name says it is a path but is not expanded must be listed in NOT_USER_PATHS with the reason.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic.fields import FieldInfo

import raydrive
from raydrive.core.options import RayOptions, UserPathOrFlag
from raydrive.core.plugins import PluginManager
from raydrive.core.registry import get_registry
from raydrive.core.runtime_env import RuntimeEnvBuilder

NOT_USER_PATHS = {
    "wheels_dir": "relative to working_dir (a directory inside the plugin), never a home path",
    "python_executable": "a command (shell words) run on the cluster, not a local path",
}
PATHY_WORDS = ("dir", "file", "path", "executable", "verify", "bundle", "cert")


def _mentions(annotation: Any, target: Any) -> bool:
    if annotation is target:
        return True
    return any(_mentions(arg, target) for arg in typing.get_args(annotation))


def _path_kind(field: FieldInfo) -> str | None:
    """'path' for a Path option, 'path-or-flag' for a ``bool | str`` path (verify), else None."""
    validators = [getattr(m, "func", None) for m in field.metadata]
    flag_validator = typing.get_args(UserPathOrFlag)[1].func
    if flag_validator in validators or _mentions(field.annotation, UserPathOrFlag):
        return "path-or-flag"
    if _mentions(field.annotation, Path):
        return "path"
    return None


def _path_options() -> list[tuple[str, str, str]]:
    found = []
    registry = get_registry()
    for name in registry.names():
        for field_name, field in registry.get(name).Options.model_fields.items():
            kind = _path_kind(field)
            if kind is not None:
                found.append((name, field_name, kind))
    return found


PATH_OPTIONS = _path_options()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_the_path_options_found_are_the_known_ones_at_least():
    found = {(driver, field) for driver, field, _ in PATH_OPTIONS}
    for driver in ("ray-actor", "ray-task", "ray-job", "ray-jobs-api", "ray-pipeline"):
        assert {(driver, "working_dir"), (driver, "requirements_file")} <= found
    assert ("local", "working_dir") in found
    assert ("ray-jobs-api", "verify", "path-or-flag") in PATH_OPTIONS


def test_every_option_named_like_a_path_is_a_path_option_or_says_why_not():
    registry = get_registry()
    for name in registry.names():
        for field_name, field in registry.get(name).Options.model_fields.items():
            if not any(word in field_name for word in PATHY_WORDS) or field_name in NOT_USER_PATHS:
                continue
            assert _path_kind(field) is not None, (
                f"{name}.{field_name} looks like a path but does not expand '~': annotate it with "
                "UserPath (raydrive.core.options) or list it in NOT_USER_PATHS with the reason"
            )


@pytest.mark.parametrize(("driver", "field", "kind"), PATH_OPTIONS, ids=lambda v: str(v))
def test_tilde_is_expanded_in_every_path_option(home, driver, field, kind):
    cls = get_registry().get(driver)
    for given, wanted in (("~/plugin/x", home / "plugin" / "x"), ("~", home)):
        # The executor's own validation (what code, RAYDRIVE_* variables and config files reach).
        executor = cls(**{field: given})
        try:
            value = getattr(executor.options, field)
        finally:
            executor.close()
        if kind == "path-or-flag":
            assert value == str(wanted)
        else:
            assert Path(value) == wanted and "~" not in str(value)
    if kind == "path-or-flag":
        for flag in (True, False):
            assert getattr(cls.Options(**{field: flag}), field) is flag
    else:
        # An absolute or relative path without ``~`` is kept as given.
        assert getattr(cls.Options(**{field: "rel/dir"}), field) == Path("rel/dir")


def test_tilde_is_expanded_when_the_option_comes_from_the_environment(home, monkeypatch):
    monkeypatch.setenv("RAYDRIVE_EXECUTOR", "local")
    monkeypatch.setenv("RAYDRIVE_WORKING_DIR", "~/plugin")
    with raydrive.get_executor() as executor:
        assert executor.options.working_dir == home / "plugin"


def test_the_runtime_env_reads_the_expanded_working_dir_and_requirements(home):
    plugin = home / "plugin"
    plugin.mkdir()
    (plugin / "my_action.py").write_text("X = 1\n")
    (home / "reqs.txt").write_text("raydrive-test-package==1.0\n")
    options = RayOptions(working_dir="~/plugin", requirements_file="~/reqs.txt")
    built = RuntimeEnvBuilder(options, plugins=PluginManager()).build(package=True, os_environ={})
    assert built.package is not None and built.package.file_count == 1
    assert built.runtime_env["pip"]["packages"] == ["raydrive-test-package==1.0"]


def test_the_local_driver_imports_from_an_expanded_working_dir(home):
    plugin = home / "plugin"
    plugin.mkdir()
    (plugin / "rd_home_action.py").write_text(
        "from pydantic import BaseModel\n"
        "from raydrive import BaseAction\n\n\n"
        "class P(BaseModel):\n    a: int\n\n\n"
        "class HomeAction(BaseAction[P]):\n"
        "    def execute(self):\n        return self.params.a * 2\n"
    )
    try:
        with raydrive.get_executor("local", working_dir="~/plugin") as executor:
            assert executor.execute("rd_home_action.HomeAction", {"a": 21}) == 42
    finally:
        sys.modules.pop("rd_home_action", None)
        if str(plugin) in sys.path:
            sys.path.remove(str(plugin))
