from __future__ import annotations

import subprocess
import sys

import raydrive


def test_all_is_complete_and_every_name_resolves():
    for name in raydrive.__all__:
        assert getattr(raydrive, name) is not None, name
    public_errors = {
        n for n in dir(__import__("raydrive.core.errors", fromlist=["x"])) if n.endswith("Error")
    }
    assert public_errors <= set(raydrive.__all__)
    for name in (
        "get_executor",
        "available_drivers",
        "hookimpl",
        "BaseAction",
        "ValidationError",
        "ExecutionError",
        "LocalExecutor",
    ):
        assert name in raydrive.__all__


def test_import_loads_no_plugin_and_no_ray():
    code = (
        "import sys, raydrive\n"
        "assert 'ray' not in sys.modules, 'import raydrive imported ray'\n"
        "assert 'raydrive.core.plugins' not in sys.modules, 'plugins loaded at import'\n"
        "raydrive.available_drivers()\n"
        "assert 'ray' not in sys.modules, 'listing drivers imported ray'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
