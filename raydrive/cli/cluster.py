"""A local loopback Ray cluster for development: up, down, status."""

from __future__ import annotations

import json
import os

import typer

from raydrive.cli._common import STATE_DIR, cluster_app, console, user_errors

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
    from raydrive.drivers.ray.cluster import LocalCluster

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
    _CLUSTER_FILE.write_text(json.dumps({
        "pid": cluster.pid, "address": cluster.address, "dashboard": cluster.dashboard_url,
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
    from raydrive.drivers.ray.cluster import stop_cluster_process

    with console.status("stopping Ray...", spinner="dots"):
        stop_cluster_process(pid)
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
