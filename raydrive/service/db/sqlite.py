"""The embedded default backend: one SQLite file in WAL mode, shared by any number of processes."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError

from raydrive.core.errors import RaydriveError
from raydrive.service.db.base import ChangeCallback, SQLStore
from raydrive.service.db.schema import (
    DatabaseUnavailableError,
    NotRaydriveDatabaseError,
    check_ours,
    upgrade_schema,
)

__all__ = ["SQLiteStore", "check_existing_file"]

_HEADER = b"SQLite format 3\x00"


def check_existing_file(path: Path) -> None:
    """Refuse ``path`` unless it is empty, an empty SQLite database or a raydrive one; reads only.

    Raises :class:`NotRaydriveDatabaseError` (or :class:`DatabaseUnavailableError` when it cannot
    be read).
    """
    try:
        with open(path, "rb") as file:
            header = file.read(len(_HEADER))
    except OSError as exc:
        raise DatabaseUnavailableError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if not header:
        return  # an empty file is an empty database (SQLite reads it so)
    if header != _HEADER:
        raise NotRaydriveDatabaseError(
            f"{str(path)!r} is not a SQLite database (nor empty); raydrive changes nothing in it: "
            "give the service a new file or an existing raydrive database"
        )
    engine = create_engine(f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            check_ours(conn, repr(str(path)))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailableError(f"cannot read {str(path)!r}: {reason}") from None
    finally:
        engine.dispose()


class SQLiteStore(SQLStore):
    """The store in one SQLite file (WAL), on SQLAlchemy Core.

    Writes go through one connection behind an in-process lock and start with ``BEGIN
    IMMEDIATE``, so concurrent writers queue instead of failing with "database is locked"; the
    busy timeout covers the writers of other processes on the same file. Reads use a small pool
    of connections outside any transaction, so a read never pins an old snapshot and never
    waits for the writer. ``synchronous=NORMAL`` keeps WAL commits durable across a
    process crash without an fsync per commit. A file it creates is ``0600``; one that was
    there is refused unless it is a raydrive database, and its mode is never changed.

    Other processes' changes are seen by :meth:`watch`: ``PRAGMA data_version`` (which changes
    when any other connection commits) every ``watch_interval`` seconds, then the runs whose
    ``change_id`` grew.

    :param path: database file; its directory is created. An existing file must be a raydrive
        database (or empty): see :meth:`_open_file`.
    :param busy_timeout: seconds to wait for another process's write lock.
    :param event_retention: run events kept per run for stream replay.
    :param migrate: upgrade an older schema on open (else refuse it, saying how).
    :param watch_interval: seconds between two change checks of :meth:`watch`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        event_retention: int = 1000,
        migrate: bool = True,
        watch_interval: float = 0.05,
    ) -> None:
        self.path = Path(path).expanduser()
        self._busy_timeout = busy_timeout
        try:
            self._open_file()
        except RaydriveError:
            raise
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"cannot use {str(self.path)!r} as the service database: {exc.strerror or exc}; "
                "give a path to a new file in a directory you can write"
            ) from None
        self._watch_interval = watch_interval
        self._write_lock = threading.Lock()
        try:
            self._enable_wal()
        except sqlite3.Error as exc:
            raise DatabaseUnavailableError(f"{self!r}: cannot open the database: {exc}") from None
        writer = self._engine("BEGIN IMMEDIATE", pool_size=1)
        # Reads run without BEGIN: each statement is its own snapshot, which no cursor left open
        # can pin (isolation_level=None never starts a transaction implicitly).
        self._reader = self._engine(None, pool_size=8)
        super().__init__(writer, event_retention=event_retention)
        try:
            upgrade_schema(writer, migrate=migrate)
        except OperationalError as exc:
            self.close()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise DatabaseUnavailableError(f"{self!r}: cannot write the database: {reason}") from None
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _open_file(self) -> None:
        """Create the file (``0600``: runs hold params and results), or check the one there.

        A file the service did not create is never changed before it is known to be a raydrive
        database: it is opened read-only first, and anything else (text, another program's
        SQLite database) is refused, as Flyway refuses a non-empty schema without its history
        table. Its mode is left as its owner set it.
        """
        if self.path.is_dir():
            raise DatabaseUnavailableError(
                f"{str(self.path)!r} is a directory; give a file path for the database"
            )
        blocking = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise DatabaseUnavailableError(
                f"cannot put the database at {str(self.path)!r}: {str(blocking)!r} is a file, not a directory"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
            return  # ours: created just now, private
        except FileExistsError:
            pass
        check_existing_file(self.path)

    def _enable_wal(self) -> None:
        """Put the file in WAL mode (it stays so: the mode is stored in the file).

        Switching a fresh file from its rollback journal needs the exclusive lock, and SQLite
        answers "database is locked" at once, without its busy handler, when two connections
        switch together (each holds the shared lock the other must drop). So the switch is
        retried here, within the busy timeout, as the busy handler would.
        """
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.001
        while True:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
                raise DatabaseUnavailableError(
                    f"{self!r}: SQLite keeps the file in journal mode {mode!r} (WAL is needed; "
                    "is it on a filesystem without shared memory, such as NFS?)"
                )
            except sqlite3.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailableError(
                        f"{self!r}: cannot put the file in WAL mode within {self._busy_timeout:g} s: {exc}"
                    ) from None
            finally:
                conn.close()
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _pragmas(self, dbapi: sqlite3.Connection) -> None:
        # isolation_level=None: transactions are explicit (the begin hooks), never implicit.
        # (WAL mode is not set here: _enable_wal stored it in the file before any connection.)
        dbapi.isolation_level = None
        with closing(dbapi.cursor()) as cursor:
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")

    def _engine(self, begin: str | None, *, pool_size: int) -> Engine:
        engine = create_engine(
            f"sqlite:///{self.path}",
            connect_args={"check_same_thread": False, "timeout": self._busy_timeout},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", lambda dbapi, _record: self._pragmas(dbapi))

        if begin is not None:

            def _begin(conn: Connection) -> None:
                conn.exec_driver_sql(begin)

            event.listen(engine, "begin", _begin)
        return engine

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn

    def watch(self, on_change: ChangeCallback, stop: threading.Event) -> None:
        """Report runs changed by any connection (this process's writer included) until ``stop``."""
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            self._pragmas(conn)
            last = conn.execute("SELECT COALESCE(MAX(change_id), 0) FROM runs").fetchone()[0]
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            while not stop.wait(self._watch_interval):
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if now == version:
                    continue  # nobody committed: the check cost one pragma
                version = now
                rows: list[Any] = conn.execute(
                    "SELECT id, change_id FROM runs WHERE change_id > ? ORDER BY change_id", (last,)
                ).fetchall()
                for run_id, change_id in rows:
                    last = change_id
                    on_change(run_id)
        finally:
            conn.close()

    def close(self) -> None:
        """Close every connection of this store."""
        self._reader.dispose()
        super().close()
