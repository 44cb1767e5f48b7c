"""The minimal install: ``pip install raydrive`` brings the drivers and the CLI, not the pipeline
service; ``raydrive[service]`` adds it, ``raydrive[postgres]`` its PostgreSQL driver."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = {"fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2", "prometheus-client"}
SERVICE_MODULES = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "jinja2", "prometheus_client")
DRIVERS = [
    "raydrive.drivers.local",
    "raydrive.drivers.ray_actor",
    "raydrive.drivers.ray_job",
    "raydrive.drivers.ray_jobs_api",
    "raydrive.drivers.ray_pipeline",
]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_core_install_leaves_the_service_to_its_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _names(project["dependencies"])
    assert {"ray", "pluggy", "pydantic", "httpx", "httpx-sse", "stevedore"} <= core
    assert not core & SERVICE_PACKAGES, core & SERVICE_PACKAGES
    extras = project["optional-dependencies"]
    assert _names(extras["service"]) >= SERVICE_PACKAGES
    assert {"raydrive", "psycopg"} <= _names(extras["postgres"])  # raydrive[service] + the driver
    assert "raydrive[service,postgres,docs]" in extras["test"]


@pytest.mark.parametrize("module", DRIVERS)
def test_importing_a_driver_imports_nothing_of_the_service(module: str) -> None:
    probe = (
        f"import sys, json, {module} as m\n"
        "getattr(m, m.__all__[0])\n"  # the executor itself, not only the package
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}
    assert not loaded & set(SERVICE_MODULES), sorted(loaded & set(SERVICE_MODULES))


# A service package hidden (sys.modules[name] = None makes it unimportable, as if not installed).
WITHOUT = (
    "import sys; sys.modules[{name!r}] = None; sys.argv = {argv!r}\nfrom raydrive.cli import main; main()"
)


@pytest.mark.parametrize(
    ("hidden", "argv"),
    [
        ("fastapi", ["raydrive", "service"]),
        ("uvicorn", ["raydrive", "service", "--port", "1"]),
        ("sqlalchemy", ["raydrive", "service", "migrate", "--from", "a.db", "--to", "b.db"]),
        ("fastapi", ["raydrive", "demo"]),
    ],
)
def test_the_service_without_its_extra_says_how_to_install_it(hidden: str, argv: list[str]) -> None:
    code = WITHOUT.format(name=hidden, argv=argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'raydrive[service]'" in lines[0] and hidden in lines[0], lines
    assert out.stdout == ""
