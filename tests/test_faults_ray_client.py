"""Ray drivers over the Ray client (``ray://``), the guide's "Remote Cluster Connection": every
call that crosses the client protocol is bounded, and what cannot be done over it takes another
path. Each submitter runs in its own process (Ray's connection is process-global; this one is
joined to the session's cluster by its GCS address)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raydrive.service.server import ServiceServer
from tests.plugin_dirs import plugin_module_dir

pytestmark = pytest.mark.ray
HERE = Path(__file__).parent
MODULE = "rd_faults_client_actions"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    with plugin_module_dir(tmp_path_factory, HERE / "actions_pipeline.py", MODULE) as root:
        yield root


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with ServiceServer(db=tmp_path_factory.mktemp("svc") / "runs.db") as server:
        yield server


def _run(code: str, timeout: float = 300) -> dict:
    prelude = "import os\nos.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ray_pipeline_over_ray_client_runs_to_the_end(ray_cluster, service, plugin_dir):
    # It hung in pin_runtime_env_uri, a call Ray's client server never answers.
    actions = [f"{MODULE}.{n}" for n in ("LoadAction", "ScaleAction", "SumAction")]
    code = (
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(plugin_dir)!r})\n"
        "import raydrive\n"
        f"ex = raydrive.get_executor('ray-pipeline', ray_address={ray_cluster.client_address!r}, "
        f"working_dir={str(plugin_dir)!r}, pipeline_service_url={service.url!r}, connect_timeout=60)\n"
        "t = time.monotonic()\n"
        f"run = ex.submit({actions!r}, {{'source': 'client', 'rows': 3}}, name='client')\n"
        "took = time.monotonic() - t\n"
        "final = ex.wait(run, timeout_seconds=180, poll_interval=0.5)\n"
        "print(json.dumps({'status': str(final.status), 'result': ex.get_result(run), 'took': took}))\n"
    )
    out = _run(code)
    assert out["status"] == "completed" and out["result"]["total"] == 30


def test_ray_actor_and_ray_job_over_ray_client_run_to_the_end(ray_cluster, plugin_dir):
    # The other two drivers by the same route, every client call of theirs bounded too.
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(plugin_dir)!r})\n"
        "import raydrive\n"
        f"address = {ray_cluster.client_address!r}\n"
        f"opts = dict(ray_address=address, working_dir={str(plugin_dir)!r}, connect_timeout=60)\n"
        f"load = '{MODULE}.LoadAction'\n"
        "with raydrive.get_executor('ray-actor', **opts) as ex:\n"
        "    actor = ex.execute(load, {'source': 'a', 'rows': 2})\n"
        "with raydrive.get_executor('ray-job', **opts) as ex:\n"
        "    job = ex.get_result(ex.submit(load, {'source': 'j', 'rows': 3}), timeout=120)\n"
        "print(json.dumps({'actor': actor, 'job': job}))\n"
    )
    out = _run(code)
    assert len(out["actor"]["data"]) == 2 and len(out["job"]["data"]) == 3
