"""Pipeline service at team scale: SQLite vs PostgreSQL, 1 and 2 processes (printed, not asserted).

For each backend (SQLite in a temp dir; PostgreSQL: a private server started like the tests'
fixture, tests/pg.py) and each process count (separate ``raydrive service`` processes on one
database, clients spread over them), on loopback:

1. throughput: 16 concurrent reporters (threads, one client and one run each) post progress reports for
   ``--seconds``; reports/s. Goal: >= 2,000/s on PostgreSQL with 2 processes.
2. fan-out: ``--subscribers`` SSE streams (default 1,000) over 50 runs, spread over the
   processes and followed by 4 client processes; one reporter posts reports to random runs;
   each sample is report POST start -> event received by a subscriber of that run. Meanwhile an
   unrelated ``GET /api/v1/runs/{id}``
   is timed. Goals: p95 <= 100 ms and <= 50 ms.
3. listing: ``--runs`` runs stored (default 100,000, inserted directly), then the first page of
   ``GET /api/v1/runs/``. Goal: <= 50 ms.

Run: ``python benchmarks/bench_service_scale.py [--seconds 5] [--subscribers 1000] [--runs 100000]
[--backends sqlite,postgresql] [--processes 1,2]``. The clients share the machine's cores with
the service processes, so on 2 cores the figures are lower bounds of what the service can do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_CLI = "import sys; from raydrive.cli import main; sys.argv[0] = 'raydrive'; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


class _Services:
    def __init__(self, db: str, count: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        env = {k: v for k, v in os.environ.items() if k != "RAYDRIVE_SERVICE_TOKEN"}
        for _ in range(count):
            port = _free_port()
            cmd = [sys.executable, "-c", _CLI, "service", "--port", str(port), "--db", db]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(proc)
            self.urls.append(f"http://127.0.0.1:{port}")
        for url in self.urls:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"service on {url} did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _make_runs(client: httpx.AsyncClient, url: str, n: int) -> list[str]:
    pipeline = (
        await client.post(f"{url}/api/v1/pipelines/", json={"name": "b", "actions": [{"name": "a"}]})
    ).json()
    runs = []
    for _ in range(n):
        runs.append(
            (await client.post(f"{url}/api/v1/pipelines/{pipeline['id']}/runs/", json={})).json()["id"]
        )
    return runs


def _throughput(urls: list[str], seconds: float, reporters: int = 16) -> float:
    # One thread and one keep-alive client per reporter, as 16 pipeline actors would be
    # (httpx's async pool is itself the bottleneck at this rate).
    with httpx.Client(timeout=30) as client:
        runs = _make_runs(client, urls[0], reporters)
    counts = [0] * reporters
    end = time.monotonic() + seconds

    def reporter(i: int) -> None:
        url, run_id, step = urls[i % len(urls)], runs[i], 0
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < end:
                step += 1
                body = {"action_progress": {"name": "a", "status": "running", "progress": (step % 100) / 100}}
                http.post(f"{url}/api/v1/runs/{run_id}/progress", json=body).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=reporter, args=(i,)) for i in range(reporters)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def _make_runs(client: httpx.Client, url: str, n: int) -> list[str]:
    body = {"name": "b", "actions": [{"name": "a"}]}
    pipeline = client.post(f"{url}/api/v1/pipelines/", json=body).json()
    return [
        client.post(f"{url}/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"] for _ in range(n)
    ]


async def _subscribe_all(streams: list[tuple[str, str]], ready: Any, stop: Any, out: Any) -> None:
    """Follow ``streams`` ((url, run id) pairs); put (run id, index, receive time) on ``out``."""
    limits = httpx.Limits(max_connections=len(streams) + 10, max_keepalive_connections=10)
    received: list[tuple[str, int, float]] = []
    opened = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=None), limits=limits) as client:

        async def follow(url: str, run_id: str) -> None:
            nonlocal opened
            async with client.stream("GET", f"{url}/api/v1/runs/{run_id}/progress/stream") as stream:
                first = True
                async for line in stream.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if first:
                        first = False
                        opened += 1
                        if opened == len(streams):
                            ready.set()
                        continue
                    # Each report names its sample number as the current action ("s<i>").
                    action = json.loads(line[6:]).get("current_action") or ""
                    index = int(action[1:]) if action[1:].isdigit() else None
                    received.append((run_id, index, time.monotonic()))

        tasks = [asyncio.create_task(follow(url, run_id)) for url, run_id in streams]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out.put(received)


def _subscriber_process(streams: list[tuple[str, str]], ready: Any, stop: Any, out: Any) -> None:
    asyncio.run(_subscribe_all(streams, ready, stop, out))


def _fanout(
    urls: list[str], subscribers: int, samples: int, clients: int = 4
) -> tuple[list[float], list[float]]:
    # Subscribers live in `clients` processes, so the client side is not what is measured;
    # time.monotonic() is one clock for every process of the machine.
    with httpx.Client(timeout=30) as http:
        runs = _make_runs(http, urls[0], 50)
        other = _make_runs(http, urls[-1], 1)[0]
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    pairs = [(urls[i % len(urls)], runs[i % len(runs)]) for i in range(subscribers)]
    procs, events = [], []
    for k in range(clients):
        ready = ctx.Event()
        proc = ctx.Process(
            target=_subscriber_process, args=(pairs[k::clients], ready, stop, out), daemon=True
        )
        proc.start()
        procs.append(proc)
        events.append(ready)
    for ready in events:
        if not ready.wait(120):
            raise RuntimeError("subscribers did not connect")
    sent: dict[tuple[str, int], float] = {}
    gets: list[float] = []
    with httpx.Client(timeout=30) as http:
        for i in range(samples):
            run_id = random.choice(runs)
            sent[(run_id, i)] = time.monotonic()
            http.post(
                f"{urls[i % len(urls)]}/api/v1/runs/{run_id}/progress", json={"current_action": f"s{i}"}
            )
            start = time.perf_counter()
            http.get(f"{urls[(i + 1) % len(urls)]}/api/v1/runs/{other}")
            gets.append(time.perf_counter() - start)
            time.sleep(0.02)
    time.sleep(1.0)
    stop.set()
    latencies = []
    for _ in procs:
        for run_id, index, at in out.get(timeout=60):
            start = sent.get((run_id, index))
            if start is not None:
                latencies.append(at - start)
    for proc in procs:
        proc.join(10)
    return latencies, gets


def _fill_runs(db: str, n: int) -> None:
    from sqlalchemy import insert

    from raydrive.core.pipeline import utcnow
    from raydrive.service.db import open_store
    from raydrive.service.db.tables import pipelines, runs
    from raydrive.service.models import Run

    store = open_store(db)
    pid = str(uuid.uuid4())
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            insert(pipelines).values(
                id=pid,
                doc=json.dumps(
                    {
                        "id": pid,
                        "name": "fill",
                        "actions": [{"name": "a"}],
                        "created_at": "2024-01-01T00:00:00Z",
                    }
                ),
            )
        )
        for start in range(0, n, 5000):
            rows = []
            for _ in range(min(5000, n - start)):
                rid = str(uuid.uuid4())
                doc = Run(id=rid, pipeline_id=pid, created_at=now).model_dump_json()
                rows.append(
                    {
                        "id": rid,
                        "pipeline_id": pid,
                        "status": "pending",
                        "event_seq": 1,
                        "doc": doc,
                        "change_id": 0,
                    }
                )
            conn.execute(insert(runs), rows)
    store.close()


def _first_page(url: str, samples: int = 50) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as client:
        client.get(f"{url}/api/v1/runs/")
        for _ in range(samples):
            start = time.perf_counter()
            client.get(f"{url}/api/v1/runs/").raise_for_status()
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--processes", default="1,2")
    args = parser.parse_args()

    from tests.pg import PostgresServer, postgres_bin_dir

    pg = None
    try:
        for backend in args.backends.split(","):
            for count in (int(n) for n in args.processes.split(",")):
                if backend == "postgresql":
                    if pg is None:
                        pg = PostgresServer(postgres_bin_dir()).start()
                        time.sleep(0.5)
                    db = pg.create_database()
                else:
                    db = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
                services = _Services(db, count)
                try:
                    rate = _throughput(services.urls, args.seconds)
                    print(f"{backend:10s} {count} proc: {rate:8.0f} reports/s (16 reporters)", flush=True)
                    if args.subscribers:
                        lat, gets = _fanout(services.urls, args.subscribers, args.samples)
                        print(
                            f"{backend:10s} {count} proc: {args.subscribers} subscribers: report->event "
                            f"p50 {statistics.median(lat) * 1e3:.1f} ms p95 {_p95(lat) * 1e3:.1f} ms "
                            f"({len(lat)} deliveries); unrelated GET p95 {_p95(gets) * 1e3:.1f} ms",
                            flush=True,
                        )
                    if args.runs and count == 1:
                        _fill_runs(db, args.runs)
                        page = _first_page(services.urls[0])
                        print(
                            f"{backend:10s} {args.runs} runs stored: first page of GET /api/v1/runs/ "
                            f"p50 {statistics.median(page) * 1e3:.1f} ms p95 {_p95(page) * 1e3:.1f} ms",
                            flush=True,
                        )
                finally:
                    services.stop()
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
