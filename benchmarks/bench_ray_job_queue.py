"""ray-job's job queue: 10,000 trivial jobs through ``max_concurrent=8`` against the same jobs unqueued.

Run: python benchmarks/bench_ray_job_queue.py [--jobs 10000] [--limit 8] [--num-cpus N]

Both figures are measured in the same run, on a cluster this script starts, with the same
executor options but the queue: submit every job at once, then collect every result; the figure
is the wall time per job. While the queued batch runs, a sampler reads the registry's queue
(jobs holding a slot, jobs waiting) and Ray's alive worker processes, and the peaks are printed:
the queue never lets more than ``--limit`` jobs hold a slot, and no Ray task exists for a queued
job, so the raylet starts no worker for it. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from typing import Any

from pydantic import BaseModel

from raydrive import BaseAction


class NoopParams(BaseModel):
    x: int = 0


class NoopAction(BaseAction[NoopParams]):
    """The trivial action: validates one int and returns it."""

    def execute(self) -> dict:
        return {"x": self.params.x}


def _batch(executor: Any, action: Any, n: int) -> float:
    """Seconds per job: submit ``n`` jobs at once, then collect every result."""
    t0 = time.perf_counter()
    ids = [executor.submit(action, {"x": i}) for i in range(n)]
    results = [executor.get_result(job, timeout=3600) for job in ids]
    took = (time.perf_counter() - t0) / n
    assert results[-1] == {"x": n - 1} and len(results) == n
    return took


class _Sampler(threading.Thread):
    """Peaks of the queue's slots and waiting jobs, and of Ray's alive worker processes."""

    def __init__(self, executor: Any, queue: str, dashboard: str) -> None:
        super().__init__(daemon=True)
        self.executor, self.queue, self.dashboard = executor, queue, dashboard
        self.stop = threading.Event()
        self.peak_running = self.peak_queued = self.peak_workers = 0

    def run(self) -> None:
        from ray.util.state import list_workers

        while not self.stop.wait(0.5):
            info = self.executor._call("queues").get(self.queue, {})
            self.peak_running = max(self.peak_running, info.get("running", 0))
            self.peak_queued = max(self.peak_queued, info.get("queued", 0))
            try:
                workers = list_workers(
                    address=self.dashboard,
                    filters=[("worker_type", "=", "WORKER"), ("is_alive", "=", "True")],
                    limit=10_000,
                    raise_on_missing_output=False,
                )
                self.peak_workers = max(self.peak_workers, len(workers))
            except Exception:  # the state API is a nicety here
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per batch")
    parser.add_argument("--limit", type=int, default=8, help="max_concurrent of the queued batch")
    parser.add_argument("--num-cpus", type=int, default=None, help="cluster CPUs (default: all)")
    args = parser.parse_args()

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a loopback cluster and client
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from raydrive.drivers.ray.cluster import LocalCluster
    from raydrive.drivers.ray_job import RayJobExecutor

    cluster = LocalCluster(num_cpus=args.num_cpus).start()
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(
            f"cluster: {cluster.address}, {cpus} CPUs; python {sys.version.split()[0]}, ray {ray.__version__}"
        )
        # Imported by name, so the workers import it as bench_ray_job_queue.NoopAction.
        from bench_ray_job_queue import NoopAction as action

        queue = f"bench-{uuid.uuid4().hex[:8]}"
        common = {"ray_address": cluster.address, "result_ttl": 600}
        unqueued = RayJobExecutor(**common)
        queued = RayJobExecutor(**common, queue=queue, max_concurrent=args.limit)
        warm = min(args.jobs, 200)
        _batch(unqueued, action, warm), _batch(queued, action, warm)  # worker pool, registry, imports

        raw = _batch(unqueued, action, args.jobs)
        sampler = _Sampler(queued, queue, cluster.dashboard_url)
        sampler.start()
        ours = _batch(queued, action, args.jobs)
        sampler.stop.set()
        sampler.join()
        n = args.jobs
        print(f"ray-job unqueued, per job in a batch of {n:<6}        {raw * 1e3:8.3f} ms")
        print(
            f"ray-job max_concurrent={args.limit}, per job in a batch of {n:<6} {ours * 1e3:8.3f} ms"
            f"  ({ours / raw:.2f}x, {(ours - raw) * 1e3:+.3f} ms per job)"
        )
        print(
            f"  queue peaks: {sampler.peak_running} holding a slot (limit {args.limit}), "
            f"{sampler.peak_queued} waiting; alive Ray worker processes at most {sampler.peak_workers}"
        )
    finally:
        ray.shutdown()
        cluster.stop()


if __name__ == "__main__":
    main()
