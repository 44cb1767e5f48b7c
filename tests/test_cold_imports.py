"""What runs on the cluster stays light to import: each cluster-side entry, imported cold in a fresh
interpreter, loads neither Ray (made on first use), nor the submitter's stack (httpx, pluggy,
stevedore, the executors), nor anything of the pipeline service, nor another driver.

The import time of each is printed (``pytest -s``), never asserted; what makes it light is the set
of modules, which is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# (module, the driver package it belongs to: the only driver it may load besides drivers.ray)
ENTRIES = [
    ("raydrive.drivers.ray.worker", "raydrive.drivers.ray"),
    ("raydrive.drivers.ray_job.registry", "raydrive.drivers.ray_job"),
    ("raydrive.drivers.ray_job.worker", "raydrive.drivers.ray_job"),
    ("raydrive.drivers.ray_jobs_api.entry", "raydrive.drivers.ray_jobs_api"),
    ("raydrive.drivers.ray_pipeline.actor", "raydrive.drivers.ray_pipeline"),
    ("raydrive.drivers.ray_pipeline.runner", "raydrive.drivers.ray_pipeline"),
    ("raydrive.drivers.ray_pipeline.watcher", "raydrive.drivers.ray_pipeline"),
]
HEAVY = {
    "ray", "httpx", "httpx_sse", "pluggy", "stevedore", "typer", "rich", "fastapi", "starlette",
    "uvicorn", "sqlalchemy", "alembic", "jinja2", "prometheus_client", "psycopg",
}  # fmt: skip

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import {module}
took = time.perf_counter() - t0
print(json.dumps({{"took": took, "modules": sorted(sys.modules)}}))
"""


def cold_import(module: str) -> tuple[float, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["took"], data["modules"]


@pytest.mark.parametrize(("module", "package"), ENTRIES, ids=[m for m, _ in ENTRIES])
def test_a_cluster_side_entry_imports_light(module: str, package: str) -> None:
    took, modules = cold_import(module)
    print(f"{module}: {took * 1e3:.0f} ms cold")
    heavy = sorted({m.split(".")[0] for m in modules} & HEAVY)
    assert not heavy, f"{module} imports {heavy} on the cluster"
    ours = [m for m in modules if m.startswith("raydrive.")]
    executors = [m for m in ours if m.endswith(".executor") or m.startswith("raydrive.core.plugins")]
    assert not executors, f"{module} imports the submitter's side: {executors}"
    service = [m for m in ours if m.startswith(("raydrive.service", "raydrive.cli"))]
    assert not service, f"{module} imports {service}"
    allowed = ("raydrive.core.", "raydrive.drivers.ray.", f"{package}.")
    packages = {"raydrive.core", "raydrive.drivers", "raydrive.drivers.ray", package}
    others = [m for m in ours if m not in packages and not m.startswith(allowed)]
    assert not others, f"{module} imports another driver: {others}"
