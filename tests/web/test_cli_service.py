"""``raydrive service`` prints its page's URL, and the page is there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conditions import answer, wait_for

RAYDRIVE = str(Path(sys.executable).with_name("raydrive"))


def test_service_command_prints_the_page_url_and_serves_it(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "RAYDRIVE_SERVICE_TOKEN"}
    proc = subprocess.Popen(
        [RAYDRIVE, "service", "--port", str(port), "--db", str(tmp_path / "svc.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        # Printed once the database is open and the port bound (issue 24 #11: never for a service
        # that then fails), before serving starts.
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert f"web page: http://127.0.0.1:{port}/" in lines, lines
        assert any("database" in line for line in lines[: lines.index(f"web page: http://127.0.0.1:{port}/")])
        page = wait_for(
            lambda: answer(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=5)), 30, "the service"
        )
        assert page.status_code == 200 and "Pipeline runs" in page.text
        assert "text/html" in page.headers["content-type"]
    finally:
        proc.terminate()
        proc.wait(20)
