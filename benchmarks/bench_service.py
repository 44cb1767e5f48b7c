"""Pipeline service benchmark: progress-report-to-SSE latency and progress-report throughput.

Starts the service the way ``raydrive service`` does (``serve()`` in its own process, SQLite in a
temporary directory) unless ``--in-process`` is given, then measures on loopback:

1. latency: one reporter posts progress reports one by one (a few ms apart) while a client
   follows the run's SSE stream; each sample is the time from starting the POST to receiving the
   matching event. Target: p95 <= 50 ms.
2. throughput: 8 reporter threads, each with its own client, post progress reports as fast as
   they can (each thread to its own run, then all threads to one run). Target: >= 500 reports/s.

Run: ``python benchmarks/bench_service.py [--samples 300] [--reports 250] [--in-process]``.
Figures depend on the machine; nothing here asserts them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from raydrive.service.client import PipelineServiceClient
from raydrive.service.server import start_service

LATENCY_TARGET_P95_MS = 50.0
THROUGHPUT_TARGET = 500.0
THREADS = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _service(db: Path, in_process: bool) -> Iterator[str]:
    if in_process:
        with start_service(db=db) as service:
            yield service.url
        return
    port = _free_port()
    code = (
        "import sys; from raydrive.service.server import serve; "
        "serve(port=int(sys.argv[1]), db=sys.argv[2], log_level='warning')"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    env.pop("RAYDRIVE_SERVICE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), str(db)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        with PipelineServiceClient(url, retries=0) as probe:
            deadline = time.monotonic() + 30
            while True:
                try:
                    probe.health()
                    break
                except Exception:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the service process did not start") from None
                    time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench_latency(url: str, samples: int) -> tuple[float, float]:
    """Return (p50, p95) in ms from a progress report's POST to its SSE event."""
    with PipelineServiceClient(url) as client:
        pipeline = client.create_pipeline("latency", [{"name": "step"}])
        run = client.create_run(pipeline.id)
        sent: dict[int, float] = {}
        latencies: list[float] = []
        ready = threading.Event()

        def follow() -> None:
            with PipelineServiceClient(url) as reader:
                for event in reader.stream_events(run.id, timeout=300):
                    now = time.perf_counter()
                    ready.set()
                    entry = event.progress.action("step")
                    i = entry.metrics.get("i") if entry else None
                    if i in sent:
                        latencies.append((now - sent[i]) * 1000)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        ready.wait(10)
        client.report_progress(run.id, status="running")
        for i in range(samples):
            sent[i] = time.perf_counter()
            client.report_progress(
                run.id,
                action_progress={
                    "name": "step",
                    "status": "running",
                    "progress": i / samples,
                    "metrics": {"i": i},
                },
            )
            time.sleep(0.005)
        client.report_progress(run.id, status="completed")
        follower.join(30)
    return statistics.median(latencies), _percentile(latencies, 0.95)


def bench_throughput(url: str, reports: int, shared_run: bool) -> float:
    """Return progress reports per second with THREADS reporters, each with its own client."""
    with PipelineServiceClient(url) as client:
        pipeline = client.create_pipeline("throughput", [{"name": "step"}])
        runs = [client.create_run(pipeline.id).id for _ in range(1 if shared_run else THREADS)]
    barrier = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def report(n: int) -> None:
        run_id = runs[0] if shared_run else runs[n]
        with PipelineServiceClient(url) as reporter:
            reporter.health()  # open the connection before the clock starts
            barrier.wait()
            try:
                for i in range(reports):
                    reporter.report_progress(
                        run_id,
                        action_progress={
                            "name": "step",
                            "status": "running",
                            "progress": i / reports,
                            "metrics": {"thread": n, "i": i},
                        },
                    )
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} reporter(s) failed: {errors[0]!r}")
    return THREADS * reports / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--reports", type=int, default=250, help="reports per reporter thread")
    parser.add_argument(
        "--in-process", action="store_true", help="serve from a thread of this process (shares its GIL)"
    )
    args = parser.parse_args()
    where = "in-process thread" if args.in_process else "separate process"
    print(f"pipeline service on loopback ({where}), SQLite store, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp, _service(Path(tmp) / "bench.db", args.in_process) as url:
        p50, p95 = bench_latency(url, args.samples)
        met = "met" if p95 <= LATENCY_TARGET_P95_MS else "MISSED"
        print(
            f"report -> SSE latency: p50 {p50:.1f} ms, p95 {p95:.1f} ms "
            f"({args.samples} samples; target p95 <= {LATENCY_TARGET_P95_MS:g} ms: {met})"
        )
        for shared in (False, True):
            rate = bench_throughput(url, args.reports, shared)
            met = "met" if rate >= THROUGHPUT_TARGET else "MISSED"
            what = "one shared run" if shared else "one run per thread"
            print(
                f"throughput, {THREADS} reporter threads, {what}: {rate:.0f} reports/s "
                f"({THREADS * args.reports} reports; target >= {THROUGHPUT_TARGET:g}/s: {met})"
            )


if __name__ == "__main__":
    main()
