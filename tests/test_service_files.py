"""Issue 24 #1, #9, #10, #11, #12 (start): what `raydrive service` and `service migrate` do with
files they did not create, and with an operator's mistakes. Each mistake is one line on stderr,
exit 2, nothing on stdout (no page URL for a service that never started), and no file changed."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from raydrive.service.config import ServiceConfigError, check_retain_days, database_from
from raydrive.service.db import default_database, open_store
from raydrive.service.models import ActionSpec, PipelineCreate, RunCreate
from tests.pg import pg_server, pg_url  # noqa: F401

_CLI = "import sys; from raydrive.cli import main; sys.argv[0] = 'raydrive'; main()"


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _raydrive(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAYDRIVE_")} | env
    return subprocess.run(
        [sys.executable, "-c", _CLI, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120
    )


def _refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stdout
    for word in words:
        assert word in lines[0], (word, lines[0])


def _state(path: Path) -> tuple[bytes, int, float]:
    info = path.stat()
    return path.read_bytes(), info.st_mode & 0o777, info.st_mtime


def _other_apps_db(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
        conn.commit()
    os.chmod(path, 0o644)
    return path


def test_a_file_that_is_not_a_raydrive_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    # Before: a text file became 0600, then a traceback; another program's SQLite database got
    # six tables added and was chmod-ed; migrate --from it migrated the *source* and exited 0.
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    os.chmod(notes, 0o644)
    other = _other_apps_db(tmp_path / "other-app.db")
    for path in (notes, other):
        before = _state(path)
        _refused(_raydrive(tmp_path, "service", "--port", _free_port(), "--db", str(path)), "not a")
        _refused(
            _raydrive(tmp_path, "service", "migrate", "--from", str(path), "--to", str(tmp_path / "new.db"))
        )
        assert _state(path) == before, path
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "other-app.db"]


def test_migrate_refuses_a_missing_source_and_the_same_database_and_creates_nothing(tmp_path: Path) -> None:
    # Before: --from typo.db created an empty database there and exited 0; --from a.db --to a.db
    # gave a traceback after 31 s.
    _refused(_raydrive(tmp_path, "service", "migrate", "--from", "typo.db", "--to", "new.db"), "typo.db")
    assert list(tmp_path.iterdir()) == []
    open_store(tmp_path / "a.db").close()
    started = time.monotonic()
    _refused(_raydrive(tmp_path, "service", "migrate", "--from", "a.db", "--to", "sqlite:///a.db"), "same")
    assert time.monotonic() - started < 60


def test_migrate_never_writes_its_source(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    store = open_store(source)
    pipeline = store.create_pipeline(PipelineCreate(name="p", actions=[ActionSpec(name="a")]))
    store.create_run(pipeline.id, RunCreate(params={"k": 1}))
    store.close()
    os.chmod(source, 0o640)
    before = {p.name: _state(p) for p in tmp_path.iterdir()}
    done = _raydrive(tmp_path, "service", "migrate", "--from", str(source), "--to", str(tmp_path / "copy.db"))
    assert done.returncode == 0, done.stderr
    assert "copied 1 runs" in done.stdout
    assert {p.name: _state(p) for p in tmp_path.iterdir() if p.name in before} == before


def test_postgres_databases_of_another_program_are_refused_and_unchanged(pg_url: str) -> None:  # noqa: F811
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id serial PRIMARY KEY)")
    with pytest.raises(Exception, match="not a raydrive database"):
        open_store(pg_url)
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == [("invoices",)]


def test_migrate_from_an_empty_postgres_database_is_refused_and_writes_nothing(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    import psycopg

    _refused(_raydrive(tmp_path, "service", "migrate", "--from", pg_url, "--to", str(tmp_path / "c.db")))
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--db", "postgresql://u@127.0.0.1:abc/db"], {}, ["port"]),
        (["--db", "postgresql://u@127.0.0.1/db?connect_timeout=x"], {}, ["connect_timeout"]),
        (["--db", "postgresql://u@[::1/db"], {}, ["IPv6"]),
        (["--db", "."], {}, ["directory"]),
        (["--db", "file.txt/under.db"], {}, ["not a directory"]),
        (["--retain-days", "0.5"], {}, ["--retain-days"]),
        (["--retain-days", "-1"], {}, ["--retain-days"]),
        (["--port", "0"], {}, ["--port"]),
        ([], {"RAYDRIVE_SERVICE_TOKEN": "x"}, ["token"]),
        (["--db-url-file", "missing.txt"], {}, ["--db-url-file"]),
        (["--db-url-file", "url.txt"], {}, ["mysql"]),
        (["--db", "a.db", "--db-url-file", "url.txt"], {}, ["not both"]),
    ],
)
def test_every_cli_mistake_is_one_line_exit_2_and_nothing_started(
    tmp_path: Path, args: list[str], env: dict[str, str], words: list[str]
) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "url.txt").write_text("mysql://u@h/db\n")
    files = sorted(p.name for p in tmp_path.iterdir())
    database = ["--db", "runs.db"] if "--db" not in args and "--db-url-file" not in args else []
    _refused(_raydrive(tmp_path, "service", "--port", _free_port(), *database, *args, **env), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_a_password_on_the_command_line_warns_naming_the_alternatives(tmp_path: Path) -> None:
    done = _raydrive(
        tmp_path, "service", "--port", _free_port(), "--db", "postgresql://u:hunter2pw@127.0.0.1:1/db"
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "RAYDRIVE_DB_URL" in done.stderr and "--db-url-file" in done.stderr
    assert "hunter2pw" not in done.stderr


def test_the_database_url_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "url").write_text("postgresql://u:pw@db.example/runs\n")
    assert database_from(None, tmp_path / "url") == "postgresql://u:pw@db.example/runs"
    monkeypatch.setenv("RAYDRIVE_SERVICE_DB", str(tmp_path / "old.db"))
    monkeypatch.setenv("RAYDRIVE_DB_URL", "postgresql://u@db.example/runs")
    assert default_database() == "postgresql://u@db.example/runs"
    with pytest.raises(ServiceConfigError):
        database_from("a.db", tmp_path / "url")


def test_retain_days_zero_keeps_every_run_and_under_a_day_is_refused() -> None:
    assert check_retain_days(None) is None and check_retain_days(0) is None
    assert check_retain_days(1) == 1 and check_retain_days(30.5) == 30.5
    for days in (0.5, -1, float("nan")):
        with pytest.raises(ServiceConfigError, match="at least 1"):
            check_retain_days(days)
