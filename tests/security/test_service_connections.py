"""Issue 24 #2: slow-loris. Connections that send half a request header were kept forever (and
1,100 of them locked everyone out); now their headers are timed and each process bounds its
open connections, and /health answers meanwhile."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raydrive.service.connections import GuardedH11Protocol
from raydrive.service.server import ServiceServer
from tests.conditions import wait_for

HALF_HEADER = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceServer]:
    monkeypatch.delenv("RAYDRIVE_SERVICE_TOKEN", raising=False)
    with ServiceServer(db=tmp_path / "c.db") as svc:
        yield svc


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 408")


def _slow_clients(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(HALF_HEADER)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def test_half_sent_headers_time_out_and_health_answers_meanwhile(
    service: ServiceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GuardedH11Protocol, "header_timeout", 1.0)  # 10 s in service; 1 s here
    socks = _slow_clients(service.port, 300)
    try:
        for _ in range(5):
            assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200
        pending = list(socks)

        def all_closed() -> bool:
            pending[:] = [s for s in pending if not _closed_by_server(s)]
            return not pending

        wait_for(all_closed, 20, "the server to close the half-sent requests")
        assert httpx.get(f"{service.url}/health", timeout=5).status_code == 200
    finally:
        for sock in socks:
            sock.close()


def test_a_process_keeps_at_most_its_bound_of_connections(
    service: ServiceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GuardedH11Protocol, "connection_bound", 40)
    socks = _slow_clients(service.port, 100)
    try:
        wait_for(
            lambda: sum(_closed_by_server(s) for s in socks) >= 60,
            20,
            "connections beyond the bound to close",
        )
    finally:
        for sock in socks:
            sock.close()
