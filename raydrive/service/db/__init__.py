"""The service's database: one set of tables, Alembic migrations, SQLite and PostgreSQL stores.

:func:`open_store` picks the backend from a database location: a path or ``sqlite:///path``
opens the embedded SQLite store, ``postgresql://...`` (or ``postgres://``) the PostgreSQL
store; any other ``scheme://`` is refused with :class:`DatabaseURLError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from raydrive.core.errors import RaydriveError
from raydrive.core.redaction import redact_url
from raydrive.service.db.base import SQLStore
from raydrive.service.db.schema import HEAD, DatabaseUnavailableError, SchemaVersionError

__all__ = [
    "DB_ENV",
    "DB_URL_ENV",
    "HEAD",
    "DatabaseURLError",
    "DatabaseUnavailableError",
    "SQLStore",
    "SchemaVersionError",
    "default_database",
    "describe_database",
    "open_store",
    "parse_database",
]

#: Environment variable naming the service's database (a path or a URL).
DB_ENV = "RAYDRIVE_SERVICE_DB"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


class DatabaseURLError(RaydriveError, ValueError):
    """A database location that names no backend raydrive has."""


#: Environment variable with the database URL; wins over :data:`DB_ENV` (keeps a password off
#: the command line).
DB_URL_ENV = "RAYDRIVE_DB_URL"


def default_database() -> str:
    """``$RAYDRIVE_DB_URL``, else ``$RAYDRIVE_SERVICE_DB``, else ``~/.raydrive/pipelines.db``."""
    return (
        os.environ.get(DB_URL_ENV)
        or os.environ.get(DB_ENV)
        or str(Path.home() / ".raydrive" / "pipelines.db")
    )


def parse_database(location: str | os.PathLike[str]) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", url)`` for a database location.

    Raises :class:`DatabaseURLError` for any other URL scheme, and for ``sqlite://`` without a
    file (an in-memory database cannot be shared by the service's processes).
    """
    text = os.fspath(location)
    match = _SCHEME.match(text)
    if match is None:
        return "sqlite", str(Path(text).expanduser())
    scheme = match.group(1).lower()
    if scheme in {"postgresql", "postgres"} or scheme.startswith("postgresql+"):
        url = "postgresql://" + text[match.end() :]
        _check_postgres_url(url)
        return "postgresql", url
    if scheme == "sqlite":
        path = text[len("sqlite:///") :] if text.startswith("sqlite:///") else ""
        if not path:
            raise DatabaseURLError(f"{text!r} names no file: use sqlite:///relative.db or sqlite:////abs.db")
        return "sqlite", str(Path(path).expanduser())
    raise DatabaseURLError(
        f"unknown database scheme {scheme!r} in {redact_url(text)!r}: use a file path, "
        "sqlite:///path/to/file.db or postgresql://user@host/dbname"
    )


def _check_postgres_url(url: str) -> None:
    # Caught here, each becomes one line naming the mistake rather than a driver's traceback.
    from sqlalchemy.engine import make_url

    shown = redact_url(url)
    try:
        parsed = make_url(url)
        port = parsed.port
    except ValueError:
        raise DatabaseURLError(
            f"{shown!r} is not a valid PostgreSQL URL (check the port is a number and an IPv6 "
            "host is in brackets: postgresql://user@[::1]:5432/db)"
        ) from None
    if port is not None and not 0 < port < 65536:
        raise DatabaseURLError(f"{shown!r}: the port must be 1 to 65535")
    for name in ("connect_timeout", "port", "keepalives", "keepalives_idle"):
        value = parsed.query.get(name)
        if isinstance(value, str) and not value.lstrip("-").isdigit():
            raise DatabaseURLError(f"{shown!r}: {name} must be a whole number, got {value!r}")


def describe_database(location: str | os.PathLike[str]) -> str:
    """The location as it may be logged (password masked)."""
    backend, target = parse_database(location)
    return target if backend == "sqlite" else redact_url(target)


def open_store(location: str | os.PathLike[str] | None = None, **options: Any) -> SQLStore:
    """Open the store at ``location`` (default :func:`default_database`); see :func:`parse_database`.

    ``options`` go to the backend (``migrate``, ``event_retention``, ...).
    """
    backend, target = parse_database(location if location is not None else default_database())
    if backend == "postgresql":
        from raydrive.service.db.postgres import PostgresStore

        return PostgresStore(target, **options)
    from raydrive.service.db.sqlite import SQLiteStore

    return SQLiteStore(target, **options)
