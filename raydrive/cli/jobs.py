"""Running actions: run one, or submit to a job driver and follow it (status, logs, result, stop)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from raydrive.cli._common import (
    ExecutorOpt,
    JobExecutorOpt,
    OptionOpt,
    ParamsOpt,
    WorkingDirOpt,
    app,
    make_executor,
    parse_options,
    parse_params,
    print_json,
    spinner,
    user_errors,
)
from raydrive.core.protocols import AsyncExecutor, LogStreamingExecutor, RetryingExecutor, SyncExecutor


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
    with make_executor(executor, parse_options(option, working_dir)) as ex, spinner(f"running {action}..."):
        if isinstance(ex, SyncExecutor):
            result = ex.execute(action, parse_params(params))
        elif isinstance(ex, AsyncExecutor):
            result = ex.get_result(ex.submit(action, parse_params(params)))
        else:
            raise typer.BadParameter(f"driver {executor!r} cannot run a single action")
    print_json(result)


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
    """Print a job's status, then its attempts when it was retried (drivers with retries)."""
    with make_executor(executor, parse_options(option, None)) as ex:
        typer.echo(str(ex.get_status(job_id)))
        if isinstance(ex, RetryingExecutor):
            for line in _attempt_lines(ex, job_id):
                typer.echo(line)


def _attempt_lines(ex: RetryingExecutor, job_id: str) -> list[str]:
    """One line per attempt (number, state, start, duration, error), none for a single attempt."""
    from raydrive.core.errors import JobNotFoundError

    try:
        attempts = ex.get_attempts(job_id)
    except JobNotFoundError:  # the status line already said UNKNOWN
        return []
    if len(attempts) < 2:
        return []
    lines = []
    for attempt in attempts:
        started = getattr(attempt, "started_at", None)
        ended = getattr(attempt, "ended_at", None)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "-"
        took = f"{ended - started:.1f} s" if started and ended else "-"
        error = getattr(attempt, "error", None)
        why = f"  {attempt.error_type}: {error}" if error else ""
        lines.append(f"attempt {attempt.number}  {attempt.state:<9}  {when}  {took:>8}{why}")
    return lines


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
        if not isinstance(ex, LogStreamingExecutor):
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
        print_json(ex.get_result(job_id, timeout=timeout))


@app.command()
@user_errors
def stop(job_id: str, executor: str | None = JobExecutorOpt, option: list[str] = OptionOpt) -> None:
    """Stop a running job."""
    with make_executor(executor, parse_options(option, None)) as ex:
        if not isinstance(ex, AsyncExecutor):
            raise typer.BadParameter(f"driver {ex.name!r} runs no jobs to stop")
        typer.echo("stopped" if ex.cancel(job_id) else "not running")
