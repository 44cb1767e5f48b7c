"""``raydrive pipeline show RUN --metrics``: the latest values and a text sparkline, from a real service."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raydrive.cli.pipeline import sparkline
from raydrive.service.server import ServiceServer

RAYDRIVE = str(Path(sys.executable).with_name("raydrive"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with ServiceServer(db=tmp_path_factory.mktemp("cli") / "runs.db", token="") as server:
        yield server


def _show(service: ServiceServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAYDRIVE_SERVICE_TOKEN"}
    return subprocess.run(
        [RAYDRIVE, "pipeline", "show", *args, "--service-url", service.url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "200"},
    )


def test_show_metrics_prints_latest_values_and_sparklines(service: ServiceServer) -> None:
    client = httpx.Client(base_url=service.url)
    pipeline = client.post("/api/v1/pipelines/", json={"name": "cli", "actions": [{"name": "train"}]}).json()
    run_id = client.post(f"/api/v1/pipelines/{pipeline['id']}/runs/", json={}).json()["id"]
    metrics = [
        {"loss": 10.0 / i, "[bold]acc": i / 500, "step": i}  # a key that looks like Rich markup
        for i in range(1, 501)
    ]
    reports = [
        {"progress": {"action_progress": {"name": "train", "status": "running", "metrics": m}}}
        for m in metrics
    ]
    assert client.post(f"/api/v1/runs/{run_id}/reports", json={"reports": reports}).status_code == 200
    shown = _show(service, run_id, "--metrics")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    loss = next(line for line in lines if " loss " in line)
    assert "0.02" in loss and " 500 " in loss and "10 " in loss  # latest, step and points, max
    assert "█" in loss and "▁" in loss  # falling: starts high, ends low
    assert any("[bold]acc" in line for line in lines)  # the key as it is, not read as markup
    plain = _show(service, run_id)
    assert plain.returncode == 0 and " loss " not in plain.stdout and "train" in plain.stdout


def test_show_an_unknown_run_says_so(service: ServiceServer) -> None:
    shown = _show(service, "no-such-run", "--metrics")
    assert shown.returncode != 0 and "no-such-run" in shown.stdout + shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr


def test_sparkline_shape() -> None:
    assert sparkline([]) == ""
    assert sparkline([1.0, 1.0]) == "▄▄"
    assert sparkline([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) == "▁▂▃▄▅▆▇█"
    assert len(sparkline([float(i) for i in range(1000)], width=20)) == 20
