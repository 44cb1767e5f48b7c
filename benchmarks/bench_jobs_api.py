"""``ray-jobs-api`` figures, each against raw Ray measured in the same run on the same cluster.

Run: python benchmarks/bench_jobs_api.py [--runs 8] [--profile | --submit-only]
Starts its own loopback LocalCluster (2 CPUs) and stops it at the end. ``--profile`` only splits
raydrive's submit -> result into its phases (where the time goes), against raw jobs with and without
a fresh ``py_modules`` package per job (what raydrive's payload costs Ray's runtime env setup).

Targets (issue 4; the first tightened by issue 10):
- submit -> result of a trivial action <= 1.10x a raw ``JobSubmissionClient`` submission of
  ``python -c pass`` with the same working dir, polled to completion (every 50 ms, the fastest
  sensible raw loop). Runs are interleaved (raw, raydrive, raw, ...); the ratio of the medians
  is the figure, the median of the per-pair ratios is printed beside it;
- a line printed by the job reaches ``stream_logs`` within 1 s (median). Ray's own
  ``tail_job_logs`` is measured on the same kind of job for scale;
- completeness: a job printing 10,000 lines, the last one right before it exits: how many
  lines ``stream_logs`` and Ray's ``tail_job_logs`` deliver.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # our own loopback cluster (see DESIGN.md)
os.environ.pop("RAY_ADDRESS", None)

ACTIONS = """
import sys, time
from pydantic import BaseModel
from raydrive import BaseAction


class NoParams(BaseModel):
    pass


class Noop(BaseAction[NoParams]):
    def execute(self):
        return {"ok": True}


class TickParams(BaseModel):
    n: int = 20
    every: float = 0.2


class Tick(BaseAction[TickParams]):
    def execute(self):
        for i in range(self.params.n):
            print(f"tick {i} {time.time():.6f}", flush=True)
            time.sleep(self.params.every)
        return None


class LinesParams(BaseModel):
    n: int = 10000


class Lines(BaseAction[LinesParams]):
    def execute(self):
        for i in range(self.params.n):
            print(f"line {i}")
        return None
"""

TICK_SCRIPT = (
    "import time\nfor i in range(20):\n    print(f'tick {i} {time.time():.6f}', flush=True); time.sleep(0.2)"
)
LINES_SCRIPT = "for i in range(10000):\n    print(f'line {i}')"


def _quote(script: str) -> str:
    import shlex

    return f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"


def raw_submit_to_done(client, working_dir: str) -> float:
    start = time.perf_counter()
    job = client.submit_job(entrypoint=f"{sys.executable} -c pass", runtime_env={"working_dir": working_dir})
    while not client.get_job_status(job).is_terminal():
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    assert str(client.get_job_status(job)) in ("SUCCEEDED", "JobStatus.SUCCEEDED"), client.get_job_logs(job)
    return elapsed


def raw_same_action(client, working_dir: str) -> float:
    """Raw Ray running the very same action code (``python -c`` calling run_action), polled."""
    script = "from raydrive.core.action import run_action; run_action('bench_actions.Noop', {})"
    start = time.perf_counter()
    job = client.submit_job(entrypoint=_quote(script), runtime_env={"working_dir": working_dir})
    while not client.get_job_status(job).is_terminal():
        time.sleep(0.05)
    return time.perf_counter() - start


def ours_submit_to_result(executor) -> float:
    start = time.perf_counter()
    job = executor.submit("bench_actions.Noop", {})
    assert executor.get_result(job, timeout=120) == {"ok": True}
    return time.perf_counter() - start


def tick_latencies(lines) -> list[float]:
    out = []
    for line in lines:
        now = time.time()
        for part in line.splitlines():
            if part.startswith("tick "):
                out.append(now - float(part.split()[2]))
    return out


def ours_log_latency(executor) -> list[float]:
    job = executor.submit("bench_actions.Tick", {"n": 20, "every": 0.2})

    return tick_latencies(executor.stream_logs(job, timeout=120))


def ray_log_latency(client, working_dir: str) -> list[float]:
    job = client.submit_job(entrypoint=_quote(TICK_SCRIPT), runtime_env={"working_dir": working_dir})

    async def follow() -> list[float]:
        out: list[float] = []
        async for chunk in client.tail_job_logs(job):
            out.extend(tick_latencies([chunk]))
        return out

    return asyncio.run(follow())


def completeness(client, executor, working_dir: str) -> tuple[int, int]:
    job = executor.submit("bench_actions.Lines", {"n": 10000})
    ours = sum(1 for line in executor.stream_logs(job, timeout=300) if line.startswith("line "))
    raw_job = client.submit_job(entrypoint=_quote(LINES_SCRIPT), runtime_env={"working_dir": working_dir})

    async def follow() -> int:
        text = []
        async for chunk in client.tail_job_logs(raw_job):
            text.append(chunk)
        return sum(1 for line in "".join(text).splitlines() if line.startswith("line "))

    return ours, asyncio.run(follow())


def _ray_span(client, job: str) -> tuple[float, float]:
    """(start, end) of a job in Ray's own records, in seconds since the epoch."""
    info = client.get_job_info(job)
    return info.start_time / 1000, info.end_time / 1000


def profile(client, executor, working_dir: str, runs: int) -> None:
    """Where the time of one submit -> result goes, median of ``runs``, raydrive against raw Ray."""
    import io
    import zipfile

    phases: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        phases.setdefault(name, []).append(value)

    for i in range(runs):
        t0 = time.time()
        job = executor.submit("bench_actions.Noop", {})
        t1 = time.time()
        executor.get_result(job, timeout=120)
        t2 = time.time()
        start, end = _ray_span(client, job)
        add("raydrive: submit() in the caller", t1 - t0)
        add("raydrive: job run in Ray (created -> ended)", end - start)
        add("raydrive: end -> get_result() returned (poll + result read)", t2 - end)
        add("raydrive: total", t2 - t0)

        t0 = time.time()
        raw = client.submit_job(
            entrypoint=f"{sys.executable} -c pass", runtime_env={"working_dir": working_dir}
        )
        t1 = time.time()
        while not client.get_job_status(raw).is_terminal():
            time.sleep(0.05)
        start, end = _ray_span(client, raw)
        add("raw: submit_job()", t1 - t0)
        add("raw: job run in Ray (created -> ended)", end - start)

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"_bench_{i}/x.json", f"{i} {time.time()}")
        uri = f"gcs://_bench_mod_{os.getpid()}_{i}.zip"
        executor._run(executor._dashboard().api.upload(uri, buf.getvalue()))
        raw = client.submit_job(
            entrypoint=f"{sys.executable} -c pass",
            runtime_env={"working_dir": working_dir, "py_modules": [uri]},
        )
        while not client.get_job_status(raw).is_terminal():
            time.sleep(0.05)
        start, end = _ray_span(client, raw)
        add("raw + a fresh py_modules package: job run in Ray", end - start)
    print("profile (median seconds):")
    for name, values in phases.items():
        print(f"    {name:62s} {statistics.median(values):6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="only the phases of submit -> result")
    parser.add_argument("--submit-only", action="store_true", help="only submit -> result, not the logs")
    args = parser.parse_args()

    import ray
    from ray.job_submission import JobSubmissionClient

    from raydrive.drivers.ray.cluster import LocalCluster
    from raydrive.drivers.ray_jobs_api import RayJobsApiExecutor

    with tempfile.TemporaryDirectory() as tmp, LocalCluster(num_cpus=2) as cluster:
        working_dir = Path(tmp)
        (working_dir / "bench_actions.py").write_text(textwrap.dedent(ACTIONS))
        for i in range(50):  # a small plugin, as users have
            (working_dir / f"module_{i}.py").write_text(f"VALUE = {i}\n" * 50)
        client = JobSubmissionClient(cluster.dashboard_url)
        executor = RayJobsApiExecutor(
            dashboard_address=cluster.dashboard_url,
            working_dir=str(working_dir),
            python_executable=sys.executable,
        )
        print(f"Ray {ray.__version__} cluster at {cluster.dashboard_url}; runs: {args.runs}")
        if args.profile:
            raw_submit_to_done(client, str(working_dir))
            ours_submit_to_result(executor)
            profile(client, executor, str(working_dir), args.runs)
            executor.close()
            return

        # Warm-up: both sides upload the working dir once and start their first workers.
        raw_submit_to_done(client, str(working_dir))
        ours_submit_to_result(executor)
        raw, ours, same = [], [], []
        for _ in range(args.runs):  # interleaved, so that load on the machine hits all alike
            raw.append(raw_submit_to_done(client, str(working_dir)))
            ours.append(ours_submit_to_result(executor))
            same.append(raw_same_action(client, str(working_dir)))
        raw_med, ours_med = statistics.median(raw), statistics.median(ours)
        ratio = ours_med / raw_med
        pairs = statistics.median(o / r for o, r in zip(ours, raw, strict=True))
        print(
            f"submit -> result, trivial action   raydrive {ours_med:6.3f} s   raw Ray submit+poll "
            f"{raw_med:6.3f} s   ratio {ratio:.2f}x  (target <= 1.10x: {'met' if ratio <= 1.1 else 'MISSED'};"
            f" median of per-pair ratios {pairs:.2f}x)"
        )
        print(f"    raydrive runs: {', '.join(f'{t:.2f}' for t in ours)}")
        print(f"    raw runs:      {', '.join(f'{t:.2f}' for t in raw)}")
        same_med = statistics.median(same)
        print(
            f"    like for like: raw Ray running the same action (python -c run_action) {same_med:6.3f} s"
            f"   ratio raydrive/that {ours_med / same_med:.2f}x (the rest is importing pydantic + the action)"
        )

        if args.submit_only:
            executor.close()
            return
        ours_lat = ours_log_latency(executor)
        ray_lat = ray_log_latency(client, str(working_dir))
        ours_lat_med = statistics.median(ours_lat)
        ray_lat_med = statistics.median(ray_lat)
        print(
            f"log line latency (median of {len(ours_lat)})  raydrive {ours_lat_med:6.3f} s   "
            f"Ray tail_job_logs {ray_lat_med:6.3f} s   ratio {ours_lat_med / ray_lat_med:.2f}x  "
            f"(target <= 1 s: {'met' if ours_lat_med <= 1.0 else 'MISSED'}); "
            f"raydrive max {max(ours_lat):.3f} s"
        )

        ours_n, ray_n = completeness(client, executor, str(working_dir))
        print(f"10,000 printed lines delivered      raydrive {ours_n}   Ray tail_job_logs {ray_n}")
        executor.close()


if __name__ == "__main__":
    main()
