"""``raydrive demo``: the example plugin through every driver, on an embedded loopback cluster.

Starts a local Ray cluster on 127.0.0.1 and the pipeline service in the background (its web page's
URL is printed, and the service stays up while the pipeline runs so it can be watched), runs the
example ML plugin (``examples/ml_plugin``) through ``ray-actor``, ``ray-job``, ``ray-jobs-api``
(logs streamed) and ``ray-pipeline`` (live progress bars), prints a summary, and stops what it
started.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PLUGIN_MODULE = "ml_plugin.actions"


def find_plugin() -> Path:
    """The example plugin: ``examples/ml_plugin`` of the source checkout raydrive runs from."""
    import raydrive

    candidate = Path(raydrive.__file__).resolve().parent.parent / "examples" / "ml_plugin"
    if not (candidate / "ml_plugin" / "actions.py").is_file():
        from raydrive.core.errors import WorkingDirError

        raise WorkingDirError(
            f"the demo's example plugin was not found at {candidate}; run the demo from a source "
            "checkout installed with `pip install -e .`",
            path=str(candidate),
        )
    return candidate


def _action(name: str) -> str:
    return f"{PLUGIN_MODULE}.{name}"


def run_demo(console: Console | None = None, *, num_cpus: int | None = None) -> list[dict[str, Any]]:
    """Run the demo; return one summary row per driver."""
    import raydrive
    from raydrive.drivers.ray.cluster import LocalCluster, loopback_client_env
    from raydrive.progress_view import watch_run
    from raydrive.service.client import PipelineServiceClient
    from raydrive.service.server import ServiceServer

    console = console or Console()
    plugin = find_plugin()
    sys.path.insert(0, str(plugin))  # so params are validated here before submission
    loopback_client_env()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="raydrive-demo-") as tmp:
        cluster = LocalCluster(num_cpus=num_cpus, log_file=str(Path(tmp) / "ray.log"))
        with console.status("starting a local Ray cluster on 127.0.0.1...", spinner="dots"):
            cluster.start()
        console.print(f"[green]Ray[/] {cluster.address}  dashboard {cluster.dashboard_url}")
        try:
            with ServiceServer(db=Path(tmp) / "pipelines.db") as service:
                console.print(f"[green]pipeline service[/] {service.url}")
                # The page is served by the same service, which stays up until the pipeline ends.
                console.print(f"[green]web page[/] {service.url}/  (open it to watch the pipeline run)")
                common = {"working_dir": str(plugin)}
                rows += _actor_and_job(console, raydrive, cluster.address, common)
                rows.append(_jobs_api(console, raydrive, cluster.dashboard_url, common, rows))
                rows.append(
                    _pipeline(
                        console,
                        raydrive,
                        cluster.address,
                        service.url,
                        common,
                        watch_run,
                        PipelineServiceClient,
                    )
                )
        finally:
            with console.status("stopping the local Ray cluster...", spinner="dots"):
                cluster.stop()
    table = Table("driver", "what ran", "seconds", "result", title="raydrive demo")
    for row in rows:
        table.add_row(row["driver"], row["what"], f"{row['seconds']:.1f}", row["result"])
    console.print(table)
    console.print("Everything the demo started has been stopped.")
    return rows


def _actor_and_job(
    console: Console, raydrive: Any, address: str, common: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = []
    console.rule("ray-actor: one warm actor, reused across calls")
    with console.status(
        "installing the plugin's requirements (numpy) in the job environment; the first run builds it...",
        spinner="dots",
    ):
        start = time.perf_counter()
        with raydrive.get_executor("ray-actor", ray_address=address, **common) as actor:
            data = actor.execute(_action("GenerateDataAction"), {"n_samples": 256, "seed": 7})
            prepared = actor.execute(_action("PreprocessAction"), {"dataset": data["dataset"]})
        seconds = time.perf_counter() - start
    console.print(f"generated {len(data['dataset']['y'])} samples, then preprocessed them on the same actor")
    rows.append(
        {
            "driver": "ray-actor",
            "what": "GenerateData + Preprocess",
            "seconds": seconds,
            "result": f"{len(prepared['dataset']['y'])} train / {len(prepared['holdout']['y'])} holdout",
            "prepared": prepared,
        }
    )
    console.rule("ray-job: four jobs at once")
    start = time.perf_counter()
    with raydrive.get_executor("ray-job", ray_address=address, **common) as jobs:
        ids = [jobs.submit(_action("GenerateDataAction"), {"n_samples": 64, "seed": s}) for s in range(4)]
        results = [jobs.get_result(job_id, timeout=600) for job_id in ids]
    seconds = time.perf_counter() - start
    console.print(f"{len(results)} jobs done: {', '.join(ids)}")
    rows.append(
        {
            "driver": "ray-job",
            "what": "4 x GenerateData",
            "seconds": seconds,
            "result": f"{len(results)} data sets",
        }
    )
    return rows


def _jobs_api(
    console: Console, raydrive: Any, dashboard: str, common: dict[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    console.rule("ray-jobs-api: a Ray job, its logs streamed live")
    prepared = rows[0]["prepared"]
    start = time.perf_counter()
    with raydrive.get_executor("ray-jobs-api", dashboard_address=dashboard, **common) as api:
        job_id = api.submit(_action("TrainAction"), {"dataset": prepared["dataset"], "epochs": 100})
        for line in api.stream_logs(job_id, timeout=600):
            console.print(f"[dim]{job_id}[/] {line.rstrip()}", highlight=False, soft_wrap=True)
        trained = api.get_result(job_id, timeout=600)
    seconds = time.perf_counter() - start
    return {
        "driver": "ray-jobs-api",
        "what": "Train (100 epochs)",
        "seconds": seconds,
        "result": f"train loss {trained['train_loss']:.4f}",
    }


def _pipeline(
    console: Console,
    raydrive: Any,
    address: str,
    service_url: str,
    common: dict[str, Any],
    watch_run: Any,
    client_cls: Any,
) -> dict[str, Any]:
    console.rule("ray-pipeline: generate -> preprocess -> train -> evaluate, checkpointed")
    start = time.perf_counter()
    pipeline = raydrive.PipelineDefinition(
        name="ml-demo",
        actions=[
            _action(n) for n in ("GenerateDataAction", "PreprocessAction", "TrainAction", "EvaluateAction")
        ],
        description="the example plugin end to end",
    )
    with (
        raydrive.get_executor(
            "ray-pipeline", ray_address=address, pipeline_service_url=service_url, **common
        ) as executor,
        client_cls(service_url) as client,
    ):
        run_id = executor.submit(pipeline, {"n_samples": 512, "epochs": 300, "seed": 1})
        console.print(f"watch it in the browser: {service_url}/runs/{run_id}", highlight=False)
        watch_run(client, run_id, timeout=600, console=console)
        evaluation = executor.get_result(run_id, timeout=600)
    seconds = time.perf_counter() - start
    return {
        "driver": "ray-pipeline",
        "what": "4-action pipeline",
        "seconds": seconds,
        "result": f"holdout r2 {evaluation['r2']:.3f}",
    }
