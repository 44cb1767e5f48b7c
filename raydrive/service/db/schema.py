"""Schema versioning with Alembic: a store brings its database to the current revision on open.

A fresh database is created by the migrations; a database of the first embedded store (no
``alembic_version`` table, ``PRAGMA user_version`` 1) is stamped as the baseline revision and
upgraded in place; a database at a revision this raydrive does not know (a newer raydrive wrote
it) is refused with what to do. Every process of a service may open the database at once: the
upgrade runs under a lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL), so exactly one of them migrates and the others find the work done.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from raydrive.core.errors import RaydriveError

__all__ = [
    "HEAD",
    "DatabaseUnavailableError",
    "NotRaydriveDatabaseError",
    "SchemaVersionError",
    "check_ours",
    "current_revision",
    "upgrade_schema",
]

_BASELINE = "0001"
# The tables of the first embedded store, which had no alembic_version table.
_LEGACY_TABLES = frozenset({"pipelines", "runs", "run_events", "checkpoints", "logs"})
# Any constant shared by every process of every raydrive service (PostgreSQL advisory lock key).
_PG_LOCK_KEY = 0x7261_7964_7276


class SchemaVersionError(RaydriveError):
    """The database's schema cannot be used by this raydrive (and was not changed)."""


class DatabaseUnavailableError(RaydriveError, ConnectionError):
    """The database server could not be reached (or refused the connection)."""


class NotRaydriveDatabaseError(SchemaVersionError):
    """The database holds another program's tables (or is no database): raydrive refuses to
    change it, as Flyway refuses a non-empty schema without its history table."""


def check_ours(conn: Connection, where: str) -> None:
    """Refuse a database that holds tables but none of raydrive's (``where`` names it)."""
    if current_revision(conn) is not None:
        return
    tables = sorted(inspect(conn).get_table_names())
    if tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise NotRaydriveDatabaseError(
            f"{where} is not a raydrive database (it holds the tables {shown}); raydrive changes "
            "nothing in it: give the service an empty database or a new file"
        )


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "raydrive.service.db:migrations")
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


HEAD: str = ScriptDirectory.from_config(_config()).get_current_head() or _BASELINE


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision; ``"0001"`` for an unversioned database of the first store."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None and set(inspect(conn).get_table_names()) >= _LEGACY_TABLES:
        return _BASELINE
    return revision


def upgrade_schema(engine: Engine, *, migrate: bool = True) -> str:
    """Bring the database of ``engine`` to :data:`HEAD`; return the revision it was at.

    :param migrate: False refuses an older database instead of upgrading it
        (:class:`SchemaVersionError` saying how to migrate).
    """
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        # (On SQLite the engine's begin is BEGIN IMMEDIATE: the write lock is held from here.)
        found = current_revision(conn)
        if found == HEAD:
            return found
        if found is None:
            check_ours(conn, "the database")
        if found is not None and found not in known:
            raise SchemaVersionError(
                f"the service database is at schema revision {found!r}, newer than this raydrive "
                f"knows (its newest is {HEAD!r}); run the raydrive version that wrote it, or upgrade raydrive"
            )
        if not migrate:
            raise SchemaVersionError(
                f"the service database is at schema revision {found or 'none'!r}, this raydrive needs "
                f"{HEAD!r}; start `raydrive service --db <url>` once (it migrates on start), or copy it "
                "with `raydrive service migrate --from <old> --to <new>`"
            )
        cfg = _config(conn)
        if found == _BASELINE and MigrationContext.configure(conn).get_current_revision() is None:
            command.stamp(cfg, _BASELINE)
        command.upgrade(cfg, "head")
        return found or "none"
