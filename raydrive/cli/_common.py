"""What every command module shares: the Typer apps, consoles, option types and error handling."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

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
            if not _state["verbose"] and getattr(exc, "remote_traceback", None):
                err_console.print("(run with --verbose for the remote traceback)")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def print_json(value: Any) -> None:
    """A JSON document on stdout, secrets redacted."""
    from raydrive.core.redaction import redact

    typer.echo(json.dumps(redact(value), indent=2, default=str))


def spinner(message: str) -> Any:
    """A spinner on a terminal; nothing when output is captured."""
    import contextlib

    return console.status(message, spinner="dots") if console.is_terminal else contextlib.nullcontext()


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

from raydrive.core.pipeline import DEFAULT_SERVICE_URL as _DEFAULT_SERVICE_URL  # noqa: E402

JobExecutorOpt = typer.Option(None, "--executor", "-e", help="Job driver (ray-job, ray-jobs-api...).")
DEFAULT_SERVICE_URL = os.environ.get("RAYDRIVE_SERVICE_URL", _DEFAULT_SERVICE_URL)
ServiceUrlOpt = typer.Option(DEFAULT_SERVICE_URL, "--service-url", help="Pipeline service URL.")


SERVICE_EXTRA = "pip install 'raydrive[service]'"
"""The install command of the pipeline service's packages (not part of ``pip install raydrive``)."""
SERVICE_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2", "prometheus_client")


def require_service() -> None:
    """Exit with status 2 and one line naming :data:`SERVICE_EXTRA` when the service's packages
    are not installed (a plain ``pip install raydrive`` brings the drivers and the CLI only)."""
    missing = [name for name in SERVICE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        err_console.print(
            f"error: the pipeline service needs {', '.join(missing)}: {SERVICE_EXTRA}",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(2)
