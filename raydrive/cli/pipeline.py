"""Pipelines: run, resume, watch, show, cancel, list (against a pipeline service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from raydrive.cli._common import (
    OptionOpt,
    ParamsOpt,
    ServiceUrlOpt,
    WorkingDirOpt,
    console,
    err_console,
    make_executor,
    parse_options,
    parse_params,
    pipeline_app,
    print_json,
    user_errors,
)
from raydrive.core.redaction import redact_text
from raydrive.progress_view import watch_run

_SPARK_BARS = "▁▂▃▄▅▆▇█"


def _plain(value: str) -> Text:
    """A name from the service as text (redacted; never read as Rich markup)."""
    return Text(redact_text(value))


_SPARK_WIDTH = 32


def sparkline(values: list[float], width: int = _SPARK_WIDTH) -> str:
    """``values`` as a line of block characters, at most ``width`` wide (each the mean of its stretch)."""
    if not values:
        return ""
    if len(values) > width:
        size = len(values) / width
        values = [
            sum(part) / len(part)
            for part in (
                values[int(i * size) : max(int(i * size) + 1, int((i + 1) * size))] for i in range(width)
            )
        ]
    low, high = min(values), max(values)
    span = high - low
    top = len(_SPARK_BARS) - 1
    return "".join(_SPARK_BARS[round((v - low) / span * top) if span else top // 2] for v in values)


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
    final = watch_run(client, run_id, console=console)
    console.print(f"run {run_id}: [bold]{final.status.value}[/]")
    if final.status.value == "completed":
        print_json(client.get_run(run_id).result)
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
    params: str | None = typer.Option(
        None,
        "--params",
        "-p",
        help="Params to give again (JSON or @file): the secret ones, kept only as ***.",
    ),
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
        new_id = ex.submit(definition, {**run.params, **parse_params(params)}, resume_from=run_id)
        _finish_run(client, new_id, watch)


@pipeline_app.command("watch")
@user_errors
def pipeline_watch(run_id: str, service_url: str = ServiceUrlOpt) -> None:
    """Draw live progress bars for a run until it ends."""
    with _service_client(service_url) as client:
        final = watch_run(client, run_id, console=console)
        console.print(f"run {run_id}: [bold]{final.status.value}[/]")


@pipeline_app.command("show")
@user_errors
def pipeline_show(
    run_id: str = typer.Argument(..., help="The run to show."),
    metrics: bool = typer.Option(False, "--metrics", help="Each metric's latest value and a sparkline."),
    service_url: str = ServiceUrlOpt,
) -> None:
    """Show a run: its status and actions, and with --metrics its metrics over their steps."""
    with _service_client(service_url) as client:
        run = client.get_run(run_id)
        console.print(f"run {redact_text(run.id)}: [bold]{run.status.value}[/]", highlight=False)
        actions = Table("action", "status", "progress", "message")
        for entry in run.progress:
            text = entry.message or entry.error or ""
            message = text.splitlines()[0][:60] if text.strip() else ""
            actions.add_row(_plain(entry.name), entry.status.value, f"{entry.progress:.0%}", _plain(message))
        console.print(actions)
        if run.error:
            err_console.print(f"error: {redact_text(run.error.splitlines()[0])}", highlight=False)
        if not metrics:
            return
        history = client.get_metrics(run_id, max_points=4 * _SPARK_WIDTH)
        if history is None:
            err_console.print("this service keeps no metric history (it predates GET /runs/{id}/metrics)")
            raise typer.Exit(1)
        if not history.series:
            console.print("no metrics reported")
            return
        table = Table("action", "metric", "latest", "step", "min", "max", "points", "history")
        for series in history.series:
            table.add_row(
                _plain(series.action),
                _plain(series.key),
                f"{series.values[-1]:.6g}",
                str(series.steps[-1]),
                f"{min(series.values):.6g}",
                f"{max(series.values):.6g}",
                str(series.points),
                sparkline(series.values),
            )
        console.print(table)


@pipeline_app.command("cancel")
@user_errors
def pipeline_cancel(run_id: str, service_url: str = ServiceUrlOpt, option: list[str] = OptionOpt) -> None:
    """Cancel a run through the service: it is marked cancelled and its actor stops the action
    and exits on its own (within about 2 s). Needs only the service; with `-o ray_address=...`
    the actor is also killed through Ray if it has not stopped after `cancel_grace`."""
    from raydrive.core.errors import ServiceError

    if option:
        with _pipeline_executor(service_url, None, option) as ex:
            ex.cancel(run_id)
        typer.echo("cancelled")
        return
    with _service_client(service_url) as client:
        if client.get_progress(run_id).status.is_terminal():
            typer.echo(f"run {run_id} has ended already")
            return
        try:
            client.cancel_run(run_id)
        except ServiceError as exc:
            if exc.status_code != 409:  # 409: it ended meanwhile
                raise
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
