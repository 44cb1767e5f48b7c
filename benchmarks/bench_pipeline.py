"""ray-pipeline per-action overhead against the same actions called on one raw Ray actor.

Run: python benchmarks/bench_pipeline.py [--actions 10] [--repeat 3]
Target (issue 5): <= 20 ms per action over the same trivial actions called in a row on one raw
Ray actor, measured in the same run on the same local cluster. Both sides are timed for a
1-action and an N-action run (N=10): the per-action cost is the slope (T_N - T_1) / (N - 1), so
the one-time costs (actor start, registering the run) are reported on their own line rather than
smeared over the actions. The pipeline side runs from submit() to the result being readable from
the service: checkpoints, progress reports and the final SSE wake-up included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ACTIONS = """
from pydantic import BaseModel
from raydrive import BaseAction

class StepParams(BaseModel):
    n: int = 0

class Step(BaseAction[StepParams]):
    def execute(self):
        return {"n": self.params.n + 1}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from raydrive.drivers.ray_common.cluster import LocalCluster, loopback_client_env

    loopback_client_env()  # before Ray is imported: Ray reads it at import time
    import ray

    import raydrive
    from raydrive.core.action import run_action
    from raydrive.service.server import ServiceServer

    with tempfile.TemporaryDirectory() as tmp, LocalCluster(num_cpus=2) as cluster:
        plugin = Path(tmp) / "plugin"
        plugin.mkdir()
        (plugin / "bench_steps.py").write_text(ACTIONS)
        sys.path.insert(0, str(plugin))
        # The raw-Ray idiom: the working dir as the job's runtime env.
        ray.init(address=cluster.address, runtime_env={"working_dir": str(plugin)})

        @ray.remote
        class Raw:
            def call(self, params):
                return run_action("bench_steps.Step", params)

        def raw_once(count: int) -> float:
            start = time.perf_counter()
            actor = Raw.remote()
            params = {"n": 0}
            for _ in range(count):
                params.update(ray.get(actor.call.remote(params)))
            assert params["n"] == count
            elapsed = time.perf_counter() - start
            ray.kill(actor)
            return elapsed

        with ServiceServer(db=Path(tmp) / "runs.db") as service:
            executor = raydrive.get_executor(
                "ray-pipeline", ray_address=cluster.address, working_dir=plugin,
                pipeline_service_url=service.url,
            )  # fmt: skip

            inside: list[float] = []

            def pipeline_once(count: int) -> float:
                start = time.perf_counter()
                run_id = executor.submit(["bench_steps.Step"] * count, {"n": 0}, name="bench")
                result = executor.get_result(run_id, timeout=300)
                elapsed = time.perf_counter() - start
                assert result == {"n": count}, result
                if count > 1:  # from the service's records: first action start -> run completed
                    run = executor.client.get_run(run_id)
                    inside.append((run.completed_at - run.progress[0].started_at).total_seconds() / count)
                return elapsed

            raw_once(1), pipeline_once(1)  # warm both: worker processes, working dir upload
            n = args.actions
            raw1 = statistics.median(raw_once(1) for _ in range(args.repeat))
            rawn = statistics.median(raw_once(n) for _ in range(args.repeat))
            pipe1 = statistics.median(pipeline_once(1) for _ in range(args.repeat))
            pipen = statistics.median(pipeline_once(n) for _ in range(args.repeat))
            executor.close()
        ray.shutdown()  # before the cluster stops, or Ray's core worker ends this process
    raw_slope = (rawn - raw1) / (n - 1) * 1000
    pipe_slope = (pipen - pipe1) / (n - 1) * 1000
    overhead = pipe_slope - raw_slope
    print(
        f"raw Ray actor: 1 call {raw1 * 1000:7.1f} ms, {n} calls {rawn * 1000:7.1f} ms "
        f"(actor start included), {raw_slope:5.1f} ms per call"
    )
    print(
        f"ray-pipeline:  1 action {pipe1 * 1000:7.1f} ms, {n} actions {pipen * 1000:7.1f} ms "
        f"(submit -> result), {pipe_slope:5.1f} ms per action"
    )
    print(
        f"ratio of {n}-action totals: {pipen / rawn:.2f}x; one-time cost over raw "
        f"(registration, actor start): {(pipe1 - raw1) * 1000:.0f} ms"
    )
    print(
        "in the run itself (service timestamps, first action start -> run completed, reports "
        f"delivered): {statistics.median(inside) * 1000:.1f} ms per action"
    )
    print(
        f"per-action overhead: {overhead:.1f} ms (target <= 20 ms: {'met' if overhead <= 20 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
