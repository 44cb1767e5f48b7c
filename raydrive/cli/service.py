"""The pipeline service, and the demo that runs everything on an embedded cluster and service."""

from __future__ import annotations

import typer

from raydrive.cli._common import app, console, require_service, user_errors

service_app = typer.Typer(help="The pipeline service.", invoke_without_command=True)
app.add_typer(service_app, name="service")


@service_app.callback()
@user_errors
def service(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8100, help="TCP port."),
    db: str | None = typer.Option(
        None,
        help="Database: a SQLite file, sqlite:///path or postgresql://user@host/db "
        "(default $RAYDRIVE_SERVICE_DB or ~/.raydrive/pipelines.db).",
    ),
    workers: int = typer.Option(1, min=1, max=64, help="Service processes sharing the port and database."),
    retain_days: float | None = typer.Option(
        None, min=0, help="Prune runs finished more than N days ago (live runs never); default keep all."
    ),
    max_streams: int = typer.Option(10_000, min=1, help="Open progress streams per process (then 503)."),
) -> None:
    """Run the pipeline service in the foreground (token: RAYDRIVE_SERVICE_TOKEN)."""
    require_service()
    if ctx.invoked_subcommand is not None:
        return
    from raydrive.service.db import parse_database
    from raydrive.service.server import serve
    from raydrive.service.web import page_url

    parse_database(db or "")  # a bad URL fails here, before anything is printed or started
    console.print(f"web page: {page_url(host, port)}", highlight=False, soft_wrap=True)
    serve(host=host, port=port, db=db, workers=workers, retain_days=retain_days, max_streams=max_streams)


@service_app.command("migrate")
@user_errors
def migrate(
    source: str = typer.Option(
        ..., "--from", help="Database to copy from (path, sqlite:///, postgresql://)."
    ),
    target: str = typer.Option(..., "--to", help="Empty database to copy into."),
) -> None:
    """Copy every pipeline, run, checkpoint, log and event into another database."""
    from raydrive.service.db import describe_database
    from raydrive.service.db.copy import copy_database

    counts = copy_database(
        source, target, on_table=lambda name, n: console.print(f"{name}: {n} rows", highlight=False)
    )
    console.print(
        f"copied {counts['runs']} runs from {describe_database(source)} to {describe_database(target)}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@user_errors
def demo(
    num_cpus: int | None = typer.Option(None, help="CPUs for the demo's cluster (default: all)."),
) -> None:
    """Run the example plugin through every driver on an embedded loopback cluster."""
    require_service()
    from raydrive.demo import run_demo

    run_demo(console, num_cpus=num_cpus)
