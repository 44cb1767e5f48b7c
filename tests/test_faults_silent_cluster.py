"""Every driver, by every route, against a silent cluster: a port that accepts connections and
never answers (a hung head, a half-open proxy). Each must give a raydrive error within its bound
(``connect_timeout``; see docs/faults.md, "The bound on every wait"), never hang.

All cases run in one child process (Ray's connection is process-global, and this process may be
joined to the session's cluster), each with ``connect_timeout=3``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raydrive.service.server import ServiceServer

ROOT = Path(__file__).resolve().parents[1]
BOUND_S = 3.0
SLACK_S = 10.0  # Python, Ray's import and the probe's own steps, on a loaded 2-CPU machine

CASES = """
import json, os, sys, time
os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
import raydrive
from raydrive import RaydriveError
port, service = int(sys.argv[1]), sys.argv[2]
cases = [
    ('ray-actor', 'gcs', {'ray_address': f'127.0.0.1:{port}'}),
    ('ray-actor', 'ray://', {'ray_address': f'ray://127.0.0.1:{port}'}),
    ('ray-job', 'gcs', {'ray_address': f'127.0.0.1:{port}'}),
    ('ray-job', 'ray://', {'ray_address': f'ray://127.0.0.1:{port}'}),
    ('ray-pipeline', 'gcs', {'ray_address': f'127.0.0.1:{port}', 'pipeline_service_url': service}),
    ('ray-pipeline', 'ray://', {'ray_address': f'ray://127.0.0.1:{port}', 'pipeline_service_url': service}),
    ('ray-jobs-api', 'dashboard', {'dashboard_address': f'http://127.0.0.1:{port}'}),
    ('ray-actor', 'auto', {'ray_address': 'auto'}),
]
out = []
for driver, route, options in cases:
    if route == 'auto':
        os.environ['RAY_ADDRESS'] = f'127.0.0.1:{port}'
    ex = raydrive.get_executor(driver, connect_timeout=3, **options)
    started = time.monotonic()
    try:
        if driver == 'ray-actor':
            ex.execute('tests.actions_faults.QuickAction', {'dir': '/tmp'})
        elif driver == 'ray-pipeline':
            ex.submit(['tests.actions_faults.QuickAction'], {'dir': '/tmp'}, name='silent')
        else:
            ex.submit('tests.actions_faults.QuickAction', {'dir': '/tmp'})
        kind = 'no error'
    except RaydriveError as exc:
        kind = type(exc).__name__
    except Exception as exc:
        kind = 'raw ' + type(exc).__name__ + ': ' + str(exc)[:200]
    out.append([driver, route, kind, time.monotonic() - started])
print(json.dumps(out))
"""


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_a_silent_cluster_gives_a_raydrive_error_within_the_bound(silent_port, tmp_path):
    with ServiceServer(db=tmp_path / "runs.db") as service:
        out = subprocess.run(
            [sys.executable, "-c", CASES, str(silent_port), service.url],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=str(ROOT),
        )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    late_or_raw = [r for r in results if r[2].startswith(("raw", "no error")) or r[3] > BOUND_S + SLACK_S]
    assert late_or_raw == [], results
    assert {r[2] for r in results} <= {"ClusterUnreachableError"}, results
