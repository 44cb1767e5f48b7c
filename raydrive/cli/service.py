"""The pipeline service, and the demo that runs everything on an embedded cluster and service."""

from __future__ import annotations

import typer

from raydrive.cli._common import app, console, err_console, require_service, user_errors

service_app = typer.Typer(help="The pipeline service.", invoke_without_command=True)
app.add_typer(service_app, name="service")


@service_app.callback()
@user_errors
def service(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8100, help="TCP port (1-65535)."),
    db: str | None = typer.Option(
        None,
        help="Database: a SQLite file, sqlite:///path or postgresql://user@host/db "
        "(default $RAYDRIVE_DB_URL, $RAYDRIVE_SERVICE_DB or ~/.raydrive/pipelines.db). "
        "A password here shows in ps: use $RAYDRIVE_DB_URL or --db-url-file.",
    ),
    db_url_file: str | None = typer.Option(
        None, help="A file holding the database URL (keeps its password off the command line)."
    ),
    workers: int = typer.Option(1, min=1, max=64, help="Service processes sharing the port and database."),
    retain_days: float | None = typer.Option(
        None,
        help="Prune runs finished more than N days ago (N >= 1; live runs never); 0 or unset keeps all.",
    ),
    max_streams: int = typer.Option(
        10_000, min=1, help="Open progress streams in total, shared by the processes (then 503)."
    ),
) -> None:
    """Run the pipeline service in the foreground (token: RAYDRIVE_SERVICE_TOKEN)."""
    require_service()
    if ctx.invoked_subcommand is not None:
        return
    from raydrive.service.config import check_retain_days, database_from, password_in
    from raydrive.service.db import default_database, parse_database
    from raydrive.service.server import serve
    from raydrive.service.web import page_url

    location = database_from(db, db_url_file)
    parse_database(location or default_database())  # a bad URL fails here, before anything starts
    check_retain_days(retain_days)
    if db is not None and password_in(db):
        err_console.print(
            "[bold yellow]warning:[/] the database password given with --db is visible to every "
            "user of this machine (ps); use RAYDRIVE_DB_URL or --db-url-file instead",
            highlight=False,
        )
    serve(
        host=host,
        port=port,
        db=location,
        workers=workers,
        retain_days=retain_days,
        max_streams=max_streams,
        # Printed once the database is open and the port bound: never for a service that failed.
        ready=lambda: console.print(f"web page: {page_url(host, port)}", highlight=False, soft_wrap=True),
    )


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
