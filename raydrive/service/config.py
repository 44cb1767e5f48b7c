"""What an operator gives the service at start, checked before anything starts or is printed.

Each check raises :class:`ServiceConfigError` (a :class:`~raydrive.core.errors.RaydriveError`,
so the CLI prints it as one line and exits 2) naming the problem and what to do.

- **The database location** comes from ``--db``, else ``--db-url-file`` (a file holding the URL,
  as Docker and Kubernetes secrets are mounted), else ``$RAYDRIVE_DB_URL``, else
  ``$RAYDRIVE_SERVICE_DB``, else ``~/.raydrive/pipelines.db``. A password given on the command
  line is visible to every user of the machine in ``ps``: the service warns, naming the
  alternatives (PostgreSQL's own tools do the same with ``PGPASSWORD``/``.pgpass``).
- **Retention**: ``--retain-days`` is at least 1 (a finished run is kept a day at the least, so
  one that ended a second ago is never deleted at once), or 0, which means keep every run
  forever (as Loki's ``retention_period: 0`` does).
- **The token**: at least :data:`MIN_TOKEN_LENGTH` characters; a short token is guessed.
"""

from __future__ import annotations

import os
from pathlib import Path

from raydrive.core.errors import RaydriveError
from raydrive.service.db import DB_URL_ENV

__all__ = [
    "DB_URL_ENV",
    "MIN_RETAIN_DAYS",
    "MIN_TOKEN_LENGTH",
    "ServiceConfigError",
    "check_retain_days",
    "check_token",
    "database_from",
    "password_in",
]

#: The shortest token the service starts with (16 characters: ~96 bits as token_urlsafe makes them).
MIN_TOKEN_LENGTH = 16
#: The shortest retention, in days (0 means keep forever).
MIN_RETAIN_DAYS = 1.0


class ServiceConfigError(RaydriveError, ValueError):
    """An option of the service is wrong; nothing was started."""


def database_from(db: str | None, db_url_file: str | os.PathLike[str] | None) -> str | None:
    """The database location from ``--db`` or ``--db-url-file`` (None: the environment's or the
    default, see :func:`raydrive.service.db.default_database`)."""
    if db is not None and db_url_file is not None:
        raise ServiceConfigError("give --db or --db-url-file, not both")
    if db_url_file is None:
        return db
    try:
        text = Path(db_url_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ServiceConfigError(f"cannot read --db-url-file {os.fspath(db_url_file)!r}: {reason}") from None
    if not text or "\n" in text:
        raise ServiceConfigError(
            f"--db-url-file {os.fspath(db_url_file)!r} must hold one line: the database URL or path"
        )
    return text


def password_in(location: str) -> bool:
    """True when ``location`` is a URL with a password in it."""
    from urllib.parse import urlsplit

    if "://" not in location:
        return False
    try:
        return bool(urlsplit(location).password)
    except ValueError:
        return False


def check_retain_days(days: float | None) -> float | None:
    """The retention in force: None keeps every run (``None`` or 0); refuses under 1 day."""
    if days is None or days == 0:
        return None
    if not days >= MIN_RETAIN_DAYS:  # also refuses NaN
        raise ServiceConfigError(
            f"--retain-days must be at least {MIN_RETAIN_DAYS:g} (days), or 0 to keep every run; got {days:g}"
        )
    return days


def check_token(token: str | None) -> None:
    """Refuse a token shorter than :data:`MIN_TOKEN_LENGTH` (None or "" means no auth)."""
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise ServiceConfigError(
            f"the service token is {len(token)} characters; use at least {MIN_TOKEN_LENGTH}, e.g. "
            "RAYDRIVE_SERVICE_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
