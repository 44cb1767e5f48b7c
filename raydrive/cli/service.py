"""The pipeline service, and the demo that runs everything on an embedded cluster and service."""

from __future__ import annotations

from pathlib import Path

import typer

from raydrive.cli._common import app, console, user_errors


@app.command()
def service(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8100, help="TCP port."),
    db: Path | None = typer.Option(None, help="SQLite file (default ~/.raydrive/pipelines.db)."),
) -> None:
    """Run the pipeline service in the foreground (token: RAYDRIVE_SERVICE_TOKEN)."""
    from raydrive.service.server import serve
    from raydrive.service.web import page_url

    console.print(f"web page: {page_url(host, port)}", highlight=False, soft_wrap=True)
    serve(host=host, port=port, db=db)

@app.command()
@user_errors
def demo(
    num_cpus: int | None = typer.Option(None, help="CPUs for the demo's cluster (default: all)."),
) -> None:
    """Run the example plugin through every driver on an embedded loopback cluster."""
    from raydrive.demo import run_demo

    run_demo(console, num_cpus=num_cpus)

