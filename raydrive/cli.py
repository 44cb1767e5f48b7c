"""The ``raydrive`` command line.

User errors (unknown driver, bad params or options, unreachable cluster or service) print one
clear line and exit with status 2; ``--verbose`` shows the traceback too.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="raydrive",
    help="Run plugin actions on Ray clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cluster_app = typer.Typer(help="A local loopback Ray cluster for development.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Run, resume, watch and cancel pipelines.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
app.add_typer(pipeline_app, name="pipeline")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
_state = {"verbose": False}
F = TypeVar("F", bound=Callable[..., Any])

STATE_DIR = Path(os.environ.get("RAYDRIVE_HOME", Path.home() / ".raydrive"))


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks of errors."),
) -> None:
    _state["verbose"] = verbose


def user_errors(func: F) -> F:
    """Turn raydrive's errors into one line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from raydrive.core.errors import RaydriveError

        try:
            return func(*args, **kwargs)
        except (RaydriveError, FileNotFoundError, json.JSONDecodeError) as exc:
            if _state["verbose"]:
                err_console.print_exception()
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {first}", highlight=False)
            if isinstance(exc, RaydriveError) and getattr(exc, "remote_traceback", None):
                err_console.print("(run with --verbose for the remote traceback)")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def parse_params(value: str | None) -> dict[str, Any]:
    """``--params`` as inline JSON or ``@file.json``."""
    if not value:
        return {}
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    params = json.loads(text)
    if not isinstance(params, dict):
        raise typer.BadParameter("params must be a JSON object")
    return params


def parse_options(pairs: list[str], working_dir: Path | None) -> dict[str, Any]:
    """``--option key=value`` pairs (values parsed as JSON when they are JSON)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--option expects key=value, got {pair!r}")
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw
    if working_dir is not None:
        options["working_dir"] = str(working_dir)
    return options


def make_executor(executor: str | None, options: dict[str, Any]) -> Any:
    import raydrive

    return raydrive.get_executor(executor, **options)


ExecutorOpt = typer.Option(None, "--executor", "-e", help="Driver name (default: from config).")
OptionOpt = typer.Option([], "--option", "-o", help="Driver option key=value; repeatable.")
WorkingDirOpt = typer.Option(None, "--working-dir", "-w", help="Plugin working directory.")
ParamsOpt = typer.Option(None, "--params", "-p", help="Params as JSON or @file.json.")


# --------------------------------------------------------------------------------------------
# drivers, plugins, config
# --------------------------------------------------------------------------------------------


@app.command()
def drivers() -> None:
    """List the registered drivers, with load failures."""
    import raydrive

    table = Table("name", "class", "description")
    for info in raydrive.available_drivers():
        if info.ok:
            table.add_row(info.name, f"{info.cls.__module__}.{info.cls.__qualname__}", info.description)
        else:
            table.add_row(info.name, f"[red]{info.target}[/]", f"[red]could not load: {info.error}[/]")
    console.print(table)


@app.command()
def plugins() -> None:
    """List the loaded policy plugins and the hooks each implements."""
    from raydrive.core.plugins import get_plugin_manager

    manager = get_plugin_manager()
    dists = manager.distinfo()
    table = Table("name", "distribution", "hooks")
    for name, plugin in manager.plugins():
        table.add_row(name, dists.get(name, "-"), ", ".join(sorted(manager.hook_names(plugin))))
    console.print(table)
    blocked = manager.blocked()
    if blocked:
        console.print(f"blocked by RAYDRIVE_DISABLE_PLUGINS: {', '.join(sorted(blocked))}")


@app.command()
@user_errors
def config(
    executor: str | None = ExecutorOpt,
    option: list[str] = OptionOpt,
) -> None:
    """Show the effective driver and options, and where each came from."""
    import raydrive

    resolved = raydrive.effective_config(executor, **parse_options(option, None))
    console.print(f"config file: {resolved.config_file or '(none found)'}")
    table = Table("setting", "value", "source")
    table.add_row("executor", resolved.driver, resolved.sources.get("executor", ""))
    for key, value in sorted(resolved.options.items()):
        shown = "<hidden>" if key == "env" else json.dumps(value, default=str)
        table.add_row(key, shown, resolved.sources.get(key, ""))
    console.print(table)


# --------------------------------------------------------------------------------------------
# run one action
# --------------------------------------------------------------------------------------------


@app.command()
@user_errors
def run(
    action: str = typer.Argument(..., help="The action as module.Class."),
    params: str | None = ParamsOpt,
    executor: str | None = ExecutorOpt,
    working_dir: Path | None = WorkingDirOpt,
    option: list[str] = OptionOpt,
) -> None:
    """Run one action through any driver and print its result as JSON."""
    from raydrive.core.action import ensure_on_path

    # Like `python -m`: actions of the working dir, else of the current directory, import here.
    ensure_on_path(str(working_dir.resolve()) if working_dir else os.getcwd())
    with make_executor(executor, parse_options(option, working_dir)) as ex, _spinner(f"running {action}..."):
        if hasattr(ex, "execute"):
            result = ex.execute(action, parse_params(params))
        elif hasattr(ex, "get_result"):
            result = ex.get_result(ex.submit(action, parse_params(params)))
        else:
            raise typer.BadParameter(f"driver {executor!r} cannot run a single action")
    _print_json(result)


def _spinner(message: str) -> Any:
    """A spinner on a terminal; nothing when output is captured."""
    import contextlib

    return console.status(message, spinner="dots") if console.is_terminal else contextlib.nullcontext()


# --------------------------------------------------------------------------------------------
# local cluster
# --------------------------------------------------------------------------------------------

_CLUSTER_FILE = STATE_DIR / "cluster.json"


@cluster_app.command("up")
@user_errors
def cluster_up(
    num_cpus: int | None = typer.Option(None, help="CPUs to offer (default: all)."),
    port: int = typer.Option(6379, help="GCS port."),
    dashboard_port: int = typer.Option(8265, help="Dashboard port."),
    client_port: int = typer.Option(10001, help="Ray client server port."),
) -> None:
    """Start a local Ray cluster on 127.0.0.1 that 'auto' finds (stop it with `cluster down`)."""
    from raydrive.drivers.ray_common.cluster import LocalCluster

    if _cluster_pid() is not None:
        console.print("a raydrive cluster is already running; see `raydrive cluster status`")
        return
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(
        num_cpus=num_cpus, gcs_port=port, dashboard_port=dashboard_port, client_port=client_port,
        default_temp=True, log_file=str(STATE_DIR / "cluster.log"),
    )  # fmt: skip
    with console.status("starting Ray on 127.0.0.1...", spinner="dots"):
        cluster.start()
    pid = cluster._proc.pid if cluster._proc else None
    _CLUSTER_FILE.write_text(json.dumps({
        "pid": pid, "address": cluster.address, "dashboard": cluster.dashboard_url,
        "client": cluster.client_address,
    }))  # fmt: skip
    console.print(
        f"Ray is up: address {cluster.address}, dashboard {cluster.dashboard_url}, "
        f"client {cluster.client_address}"
    )
    console.print("Clients of this cluster need RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in their environment.")


def _cluster_pid() -> int | None:
    if not _CLUSTER_FILE.exists():
        return None
    pid = json.loads(_CLUSTER_FILE.read_text()).get("pid")
    try:
        os.kill(pid, 0)
    except (OSError, TypeError):
        return None
    return pid


@cluster_app.command("down")
def cluster_down() -> None:
    """Stop the cluster that `raydrive cluster up` started."""
    pid = _cluster_pid()
    if pid is None:
        console.print("no raydrive cluster is running")
        _CLUSTER_FILE.unlink(missing_ok=True)
        return
    os.killpg(pid, signal.SIGINT)
    for _ in range(120):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.25)
    else:
        os.killpg(pid, signal.SIGKILL)
    _CLUSTER_FILE.unlink(missing_ok=True)
    console.print("stopped")


@cluster_app.command("status")
def cluster_status() -> None:
    """Say whether the local cluster is running, and its addresses."""
    pid = _cluster_pid()
    if pid is None:
        console.print("no raydrive cluster is running (start one with `raydrive cluster up`)")
        raise typer.Exit(1)
    info = json.loads(_CLUSTER_FILE.read_text())
    console.print(
        f"running (pid {pid}): address {info['address']}, dashboard {info['dashboard']}, "
        f"client {info['client']}"
    )


# --------------------------------------------------------------------------------------------
# job drivers: submit, status, logs, result, stop
# --------------------------------------------------------------------------------------------

JobExecutorOpt = typer.Option(None, "--executor", "-e", help="Job driver (ray-job, ray-jobs-api...).")


@app.command()
@user_errors
def submit(
    action: str = typer.Argument(..., help="The action as module.Class."),
    params: str | None = ParamsOpt,
    executor: str | None = JobExecutorOpt,
    working_dir: Path | None = WorkingDirOpt,
    option: list[str] = OptionOpt,
    job_id: str | None = typer.Option(None, "--job-id", help="Job id (default: generated)."),
) -> None:
    """Submit an action to a job driver and print the job id."""
    with make_executor(executor, parse_options(option, working_dir)) as ex:
        typer.echo(ex.submit(action, parse_params(params), job_id=job_id))


@app.command()
@user_errors
def status(job_id: str, executor: str | None = JobExecutorOpt, option: list[str] = OptionOpt) -> None:
    """Print a job's status."""
    with make_executor(executor, parse_options(option, None)) as ex:
        typer.echo(str(ex.get_status(job_id)))


@app.command()
@user_errors
def logs(
    job_id: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends."),
    executor: str | None = JobExecutorOpt,
    option: list[str] = OptionOpt,
) -> None:
    """Print a job's logs (drivers with log streaming, e.g. ray-jobs-api)."""
    with make_executor(executor, parse_options(option, None)) as ex:
        if not hasattr(ex, "get_logs"):
            raise typer.BadParameter(f"driver {ex.name!r} keeps no logs; use ray-jobs-api")
        if follow:
            for line in ex.stream_logs(job_id):
                typer.echo(line, nl=False)
        else:
            typer.echo(ex.get_logs(job_id), nl=False)


@app.command()
@user_errors
def result(
    job_id: str,
    timeout: float | None = typer.Option(None, help="Seconds to wait for the job."),
    executor: str | None = JobExecutorOpt,
    option: list[str] = OptionOpt,
) -> None:
    """Wait for a job and print its result as JSON."""
    with make_executor(executor, parse_options(option, None)) as ex:
        _print_json(ex.get_result(job_id, timeout=timeout))


@app.command()
@user_errors
def stop(job_id: str, executor: str | None = JobExecutorOpt, option: list[str] = OptionOpt) -> None:
    """Stop a running job."""
    with make_executor(executor, parse_options(option, None)) as ex:
        stopped = ex.stop(job_id) if hasattr(ex, "stop") else ex.cancel(job_id)
        typer.echo("stopped" if stopped is not False else "not running")


# --------------------------------------------------------------------------------------------
# pipeline service and pipelines
# --------------------------------------------------------------------------------------------

DEFAULT_SERVICE_URL = os.environ.get("RAYDRIVE_SERVICE_URL", "http://127.0.0.1:8100")
ServiceUrlOpt = typer.Option(DEFAULT_SERVICE_URL, "--service-url", help="Pipeline service URL.")


@app.command()
def service(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8100, help="TCP port."),
    db: Path | None = typer.Option(None, help="SQLite file (default ~/.raydrive/pipelines.db)."),
) -> None:
    """Run the pipeline service in the foreground (token: RAYDRIVE_SERVICE_TOKEN)."""
    from raydrive.service.server import serve

    serve(host=host, port=port, db=db)


def watch_run(client: Any, run_id: str, *, timeout: float = 3600.0) -> Any:
    """Draw one live progress bar per action from the run's SSE stream; return the final view."""
    from rich.live import Live
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    bars = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]:<10}"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, Any] = {}
    final = None
    with Live(bars, console=console, refresh_per_second=8, transient=False):
        for event in client.stream_events(run_id, timeout=timeout):
            final = event.progress
            for entry in final.progress:
                if entry.name not in tasks:
                    tasks[entry.name] = bars.add_task(entry.name, total=1.0, status="", step="", start=False)
                task = tasks[entry.name]
                if entry.status.value != "pending":
                    bars.start_task(task)
                done = entry.status.value in ("completed", "skipped")
                bars.update(
                    task,
                    completed=1.0 if done else entry.progress,
                    status=entry.status.value,
                    step=entry.progress_step or entry.error or "",
                )
                if entry.status.value in ("completed", "skipped", "failed"):
                    bars.stop_task(task)
    return final


def _service_client(url: str) -> Any:
    from raydrive.service.client import PipelineServiceClient

    return PipelineServiceClient(url)


def _pipeline_executor(service_url: str, working_dir: Path | None, option: list[str]) -> Any:
    options = parse_options(option, working_dir)
    options.setdefault("pipeline_service_url", service_url)
    return make_executor("ray-pipeline", options)


def _finish_run(client: Any, run_id: str, watch: bool) -> None:
    if not watch:
        typer.echo(run_id)
        return
    final = watch_run(client, run_id)
    console.print(f"run {run_id}: [bold]{final.status.value}[/]")
    if final.status.value == "completed":
        _print_json(client.get_run(run_id).result)
    else:
        if final.error:
            err_console.print(f"error: {final.error.splitlines()[0]}", highlight=False)
        raise typer.Exit(1)


@pipeline_app.command("run")
@user_errors
def pipeline_run(
    actions: list[str] = typer.Argument(..., help="Actions in order, as module.Class."),
    name: str = typer.Option("pipeline", "--name", "-n", help="Pipeline name."),
    params: str | None = ParamsOpt,
    working_dir: Path | None = WorkingDirOpt,
    option: list[str] = OptionOpt,
    service_url: str = ServiceUrlOpt,
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Draw live progress until the end."),
) -> None:
    """Run actions as a checkpointed pipeline on Ray (needs `raydrive service`)."""
    with _pipeline_executor(service_url, working_dir, option) as ex, _service_client(service_url) as client:
        run_id = ex.submit(list(actions), parse_params(params), name=name)
        _finish_run(client, run_id, watch)


@pipeline_app.command("resume")
@user_errors
def pipeline_resume(
    run_id: str = typer.Argument(..., help="The failed or cancelled run to resume."),
    working_dir: Path | None = WorkingDirOpt,
    option: list[str] = OptionOpt,
    service_url: str = ServiceUrlOpt,
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Draw live progress until the end."),
) -> None:
    """Resume a run from its latest checkpoint, skipping the actions already done."""
    from raydrive.core.pipeline import PipelineDefinition

    with _service_client(service_url) as client, _pipeline_executor(service_url, working_dir, option) as ex:
        run = client.get_run(run_id)
        stored = client.get_pipeline(run.pipeline_id)
        definition = PipelineDefinition(
            name=stored.name,
            actions=[a.entrypoint or a.name for a in stored.actions],
            description=stored.description,
        )
        new_id = ex.submit(definition, dict(run.params), resume_from=run_id)
        _finish_run(client, new_id, watch)


@pipeline_app.command("watch")
@user_errors
def pipeline_watch(run_id: str, service_url: str = ServiceUrlOpt) -> None:
    """Draw live progress bars for a run until it ends."""
    with _service_client(service_url) as client:
        final = watch_run(client, run_id)
        console.print(f"run {run_id}: [bold]{final.status.value}[/]")


@pipeline_app.command("cancel")
@user_errors
def pipeline_cancel(run_id: str, service_url: str = ServiceUrlOpt, option: list[str] = OptionOpt) -> None:
    """Cancel a run: its actor is stopped and the run is marked cancelled."""
    with _pipeline_executor(service_url, None, option) as ex:
        ex.cancel(run_id)
    typer.echo("cancelled")


@pipeline_app.command("list")
@user_errors
def pipeline_list(
    service_url: str = ServiceUrlOpt,
    status_filter: str | None = typer.Option(None, "--status", help="Only runs with this status."),
    limit: int = typer.Option(20, help="How many runs."),
) -> None:
    """List recent pipeline runs."""
    with _service_client(service_url) as client:
        runs = client.list_runs(status_filter, 0, limit)
        table = Table("run id", "status", "current action", "created", "error")
        for run in runs:
            error = (run.error or "").splitlines()[0][:60] if run.error else ""
            created = str(run.created_at)[:19]
            table.add_row(run.id, run.status.value, run.current_action or "-", created, error)
        console.print(table)


@app.command()
@user_errors
def demo(
    num_cpus: int | None = typer.Option(None, help="CPUs for the demo's cluster (default: all)."),
) -> None:
    """Run the example plugin through every driver on an embedded loopback cluster."""
    from raydrive.demo import run_demo

    run_demo(console, num_cpus=num_cpus)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
