"""A private PostgreSQL server for the tests, started with initdb/pg_ctl and removed afterwards.

Like ``testing.postgresql``: a data directory in a temp dir, a free loopback port, trust auth
for the local user only. We run as root in CI containers, and PostgreSQL refuses to run as
root, so the server runs as the ``postgres`` system user (the temp dir is handed to it).
Where the binaries are missing, the PostgreSQL tests skip saying so, except under ``CI=true``,
where that is a failure (CI installs the distribution's ``postgresql`` package).

Use the fixture ``pg_url`` (a fresh empty database per test) from a test module with
``from tests.pg import pg_server, pg_url  # noqa: F401``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "pg_server", "pg_url"]


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder (Debian's layout first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One private server: :meth:`start`, :meth:`url`, :meth:`stop` (removes everything)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="raydrive-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        """initdb, then pg_ctl start on 127.0.0.1:port; waits until it accepts connections."""
        if self.user is not None:
            shutil.chown(self.base, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.base}"
            " -c fsync=off -c max_connections=300 -c shared_buffers=64MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "log"), "-w", "start")
        return self

    def url(self, dbname: str = "postgres") -> str:
        """URL of database ``dbname`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL server (skips where PostgreSQL is not installed)."""
    bin_dir = postgres_bin_dir()
    reason = None
    if bin_dir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or PATH"
    elif os.geteuid() == 0 and shutil.which("runuser") is None:
        reason = "running as root and runuser is missing (PostgreSQL refuses to run as root)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    server = PostgresServer(bin_dir).start()
    deadline = time.monotonic() + 30
    while True:
        try:
            server.create_database()
            break
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """URL of a fresh, empty database on the session's PostgreSQL server."""
    return pg_server.create_database()
