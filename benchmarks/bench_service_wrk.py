"""Progress reports per second with a compiled load generator (``wrk`` with a Lua script).

``bench_service_scale.py`` drives the service from Python threads, which on a small machine may
be the bottleneck themselves (each request costs the client about as much CPU as the server).
Here ``wrk`` (Debian's package) sends the ``POST /api/v1/runs/{id}/progress`` reports, round robin
over 16 runs, with ``Prefer: return=minimal`` as raydrive's own reporter does, and the figure is
printed beside the load generator's own CPU use, so a reader can tell which side was saturated.

Run: ``python benchmarks/bench_service_wrk.py [--seconds 10] [--connections 32] [--workers 1,2]
[--backends sqlite,postgresql]``. PostgreSQL is a throw-away server in a temp dir (the test
suite's ``tests/pg.py``). The issue's targets are printed as ratios: SQLite with one process
>= 1,000 reports/s, PostgreSQL with two processes >= 2,000 reports/s.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_CLI = "import sys; from raydrive.cli import main; sys.argv[0] = 'raydrive'; main()"
TARGETS = {("sqlite", 1): 1_000.0, ("postgresql", 2): 2_000.0}
RUNS = 16

_LUA = """
local runs = {%(runs)s}
local i = 0
local headers = {["Content-Type"] = "application/json", ["Prefer"] = "return=minimal"}
request = function()
  i = i + 1
  local run = runs[(i %% #runs) + 1]
  local body = '{"action_progress":{"name":"a","status":"running","progress":' .. ((i %% 100) / 100) .. '}}'
  return wrk.format("POST", "/api/v1/runs/" .. run .. "/progress", headers, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # a benchmark's start-up poll, not a test's synchronisation
    raise RuntimeError(f"the service on {url} did not start within {timeout:.0f} s")


def start_service(db: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAYDRIVE_SERVICE_TOKEN"}
    cmd = [sys.executable, "-c", _CLI, "service", "--port", str(port), "--workers", str(workers)]
    cmd += ["--db", db] if "://" not in db else []
    if "://" in db:
        env["RAYDRIVE_DB_URL"] = db  # never a password on the command line
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return proc, url


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_runs(url: str, n: int) -> list[str]:
    with httpx.Client(timeout=30) as client:
        body = {"name": "wrk", "actions": [{"name": "a"}]}
        pipeline = client.post(f"{url}/api/v1/pipelines/", json=body).json()
        return [
            client.post(f"{url}/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]
            for _ in range(n)
        ]


def run_wrk(url: str, script: Path, seconds: float, connections: int) -> tuple[float, int, float]:
    """Requests/s, non-2xx answers, and wrk's own CPU seconds per wall second."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:.0f}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(bad.group(1)) if bad else 0, cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'backend':<11} {'processes':>9} {'reports/s':>10} {'non-2xx':>8} {'wrk CPU':>8}  vs target")
    pg = None
    try:
        for backend in args.backends.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                with tempfile.TemporaryDirectory() as tmp:
                    if backend == "postgresql":
                        if pg is None:
                            from tests.pg import PostgresServer, postgres_bin_dir

                            pg = PostgresServer(postgres_bin_dir()).start()
                        db = pg.create_database()
                    else:
                        db = str(Path(tmp) / "runs.db")
                    proc, url = start_service(db, workers)
                    try:
                        runs = make_runs(url, RUNS)
                        script = Path(tmp) / "progress.lua"
                        script.write_text(_LUA % {"runs": ", ".join(f'"{r}"' for r in runs)})
                        rate, bad, wrk_cpu = run_wrk(url, script, args.seconds, args.connections)
                    finally:
                        stop_service(proc)
                target = TARGETS.get((backend, workers))
                versus = f"{rate / target:.2f}x of {target:,.0f}/s" if target else ""
                print(f"{backend:<11} {workers:>9} {rate:>10,.0f} {bad:>8} {wrk_cpu:>7.0%}  {versus}")
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
