"""/health under 1,000 slow-loris connections and one 15 MiB body at a time (issue 24, measures).

Two services on loopback, measured in the same run: the **baseline** (the service app on
uvicorn's plain h11 protocol, as before issue 24) and **raydrive** (``raydrive service``: the
header-read timeout and connection bound of :mod:`raydrive.service.connections`, bodies parsed
off the event loop). For each, an attacker process keeps ``--slow`` connections open, each
sending half a request header and a byte every second (reopening any the server closes), and
an uploader process posts one ~15 MiB run create after another; meanwhile this process times
``GET /health`` ``--samples`` times. Printed, never asserted: p50/p99 of /health, ratio to the
baseline, and the CPU seconds of the load generators (they must not be the bottleneck).

Rerun: ``python benchmarks/bench_service_slowloris.py --slow 1000 --samples 300``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

_BASELINE = """
import sys, uvicorn
from raydrive.service.app import create_app
app = create_app(db_path=sys.argv[2], token="")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", http="h11")
"""
_RAYDRIVE = "import sys; from raydrive.cli import main; sys.argv[0] = 'raydrive'; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _attacker(port: int, count: int, stop: mp.Event, cpu: mp.Queue) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks: list[socket.socket | None] = [None] * count
    while not stop.is_set():
        for i in range(count):
            sock = socks[i]
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    socks[i] = sock
                else:
                    sock.sendall(b"X")  # one more byte of a header that never ends
            except OSError:
                if sock is not None:
                    sock.close()
                socks[i] = None
        stop.wait(1.0)
    for sock in socks:
        if sock is not None:
            sock.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu.put(("attacker", usage.ru_utime + usage.ru_stime))


def _uploader(url: str, pipeline_id: str, stop: mp.Event, cpu: mp.Queue) -> None:
    body = json.dumps({"params": {"blob": "x" * (15 * 1024 * 1024 - 200)}}).encode()
    with httpx.Client(timeout=120) as http:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                http.post(f"{url}/api/v1/pipelines/{pipeline_id}/runs/", content=body,
                          headers={"content-type": "application/json"})  # fmt: skip
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu.put(("uploader", usage.ru_utime + usage.ru_stime))


def _measure(name: str, command: list[str], port: int, slow: int, samples: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "RAYDRIVE_SERVICE_TOKEN"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.1)
        definition = {"name": "p", "actions": [{"name": "a"}]}
        pipeline = httpx.post(f"{url}/api/v1/pipelines/", json=definition).json()
        stop, cpu = mp.Event(), mp.Queue()
        workers = [
            mp.Process(target=_attacker, args=(port, slow, stop, cpu)),
            mp.Process(target=_uploader, args=(url, pipeline["id"], stop, cpu)),
        ]
        for worker in workers:
            worker.start()
        time.sleep(5)  # let the attacker open its connections and the first upload start
        times, failures = [], 0
        with httpx.Client(timeout=10) as http:
            for _ in range(samples):
                start = time.perf_counter()
                try:
                    ok = http.get(f"{url}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                times.append(time.perf_counter() - start if ok else 10.0)
                failures += not ok
                time.sleep(0.05)
        stop.set()
        used = dict(cpu.get(timeout=120) for _ in workers)
        for worker in workers:
            worker.join(60)
        times.sort()
        p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
        print(f"{name:9s} /health p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms"
              f"  failed {failures}/{samples}  load CPU s: attacker {used['attacker']:.1f},"
              f" uploader {used['uploader']:.1f}")  # fmt: skip
        return times
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slow", type=int, default=1000, help="slow-loris connections")
    parser.add_argument("--samples", type=int, default=300, help="/health requests timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        base = _measure("baseline", [sys.executable, "-c", _BASELINE, str(port), str(Path(tmp) / "b.db")],
                        port, args.slow, args.samples)  # fmt: skip
        port = _free_port()
        database = str(Path(tmp) / "r.db")
        command = [sys.executable, "-c", _RAYDRIVE, "service", "--port", str(port), "--db", database]
        ours = _measure("raydrive", command, port, args.slow, args.samples)
    p99 = lambda t: t[int(len(t) * 0.99) - 1]  # noqa: E731
    print(f"p99 ratio raydrive/baseline: {p99(ours) / p99(base):.3f} (target: raydrive p99 <= 100 ms)")


if __name__ == "__main__":
    main()
