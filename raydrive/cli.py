"""The ``raydrive`` command line.

User errors (unknown driver, bad params or options, unreachable cluster or service) print one
clear line and exit with status 2; ``--verbose`` shows the traceback too.
"""

from __future__ import annotations

import json
import os
import signal
import sys
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
err_console = Console(stderr=True)
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

    ensure_on_path(str(working_dir.resolve()) if working_dir else None)
    with make_executor(executor, parse_options(option, working_dir)) as ex:
        with console.status(f"running {action}...", spinner="dots") if sys.stderr.isatty() else _null():
            if hasattr(ex, "execute"):
                result = ex.execute(action, parse_params(params))
            elif hasattr(ex, "get_result"):
                result = ex.get_result(ex.submit(action, parse_params(params)))
            else:
                raise typer.BadParameter(f"driver {executor!r} cannot run a single action")
    _print_json(result)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
