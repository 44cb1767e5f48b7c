"""``raydrive service migrate``: copy every row of one service database into another."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, func, insert, select, text
from sqlalchemy.exc import OperationalError

from raydrive.core.errors import RaydriveError
from raydrive.core.redaction import redact_text
from raydrive.service.db import describe_database, open_store, parse_database
from raydrive.service.db.schema import HEAD, current_revision
from raydrive.service.db.sqlite import check_existing_file
from raydrive.service.db.tables import TABLES

__all__ = ["DatabaseCopyError", "copy_database"]


class DatabaseCopyError(RaydriveError):
    """The copy was refused or did not complete (the target was left unchanged)."""


def _same_database(source: str, target: str) -> bool:
    (kind, a), (other, b) = parse_database(source), parse_database(target)
    if kind != other:
        return False
    if kind == "sqlite":
        return Path(a).resolve() == Path(b).resolve()
    from sqlalchemy.engine import make_url

    x, y = make_url(a), make_url(b)
    return (x.host, x.port or 5432, x.database) == (y.host, y.port or 5432, y.database)


def _read_only_engine(source: str) -> Engine:
    """An engine that can only read ``source``; raises when there is no raydrive database there."""
    kind, target = parse_database(source)
    if kind == "sqlite":
        path = Path(target)
        if not path.is_file():
            raise DatabaseCopyError(
                f"there is no database file at {target!r} to copy from; check the --from path"
            )
        check_existing_file(path)
        # mode=ro: SQLite itself refuses any write, so the source cannot change whatever happens.
        engine = create_engine(f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true")
        # One explicit transaction for the whole read: one snapshot, whatever writers do meanwhile.
        event.listen(engine, "connect", lambda dbapi, _record: setattr(dbapi, "isolation_level", None))
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    from sqlalchemy.engine import make_url

    url = make_url(target).set(drivername="postgresql+psycopg")
    # Every transaction of these connections is READ ONLY: the server refuses any write.
    return create_engine(
        url,
        isolation_level="REPEATABLE READ",  # one snapshot for the whole copy
        connect_args={"options": "-c default_transaction_read_only=on"},
    )


def copy_database(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    batch: int = 1000,
    on_table: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Copy every pipeline, run, run event, checkpoint and log of ``source`` into ``target``.

    The source is only ever read: it is opened read-only (SQLite ``mode=ro``, PostgreSQL
    ``default_transaction_read_only``), must exist and be a raydrive database at the current
    schema (an older one is refused, saying how to upgrade it), and is never migrated. It is
    read in one transaction (a consistent snapshot); the target is brought to the current
    schema and written in one transaction, so a failed copy leaves it as it was. Ids and event
    numbers are kept, so clients resume streams with their ``Last-Event-ID`` against the new
    database.

    :param batch: rows per insert.
    :param on_table: called with each table's name and row count once it is copied.
    :returns: rows copied per table.
    :raises DatabaseCopyError: the source is missing, is the target, is not at the current
        schema, or the target already holds pipelines, or the counts differ.
    """
    source, target = os.fspath(source), os.fspath(target)
    if _same_database(source, target):
        raise DatabaseCopyError(
            f"--from and --to name the same database ({describe_database(source)}); copy into another one"
        )
    engine = _read_only_engine(source)
    try:
        with engine.connect() as conn:
            found = current_revision(conn)
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseCopyError(f"cannot read {describe_database(source)}: {redact_text(reason)}") from None
    if found != HEAD:
        engine.dispose()
        raise DatabaseCopyError(
            f"{describe_database(source)} is at schema revision {found or 'none'!r}, not {HEAD!r}; "
            "migrate copies only a current database and never changes its source: start "
            "`raydrive service --db <it>` once to upgrade it, then copy"
            if found
            else f"{describe_database(source)} holds no raydrive database; check the --from location"
        )
    try:
        dst = open_store(target)
    except BaseException:
        engine.dispose()
        raise
    counts: dict[str, int] = {}
    try:
        with engine.begin() as reader, dst.engine.begin() as writer:
            if writer.execute(select(func.count()).select_from(TABLES[0])).scalar_one():
                raise DatabaseCopyError(
                    f"the target database {describe_database(target)} already has pipelines; "
                    "migrate into an empty database"
                )
            for table in TABLES:
                copied = 0
                order = list(table.primary_key.columns)
                rows = reader.execution_options(yield_per=batch).execute(select(table).order_by(*order))
                for chunk in rows.partitions(batch):
                    writer.execute(insert(table), [dict(row._mapping) for row in chunk])
                    copied += len(chunk)
                total = writer.execute(select(func.count()).select_from(table)).scalar_one()
                if total != copied:
                    raise DatabaseCopyError(f"{table.name}: copied {copied} rows but the target has {total}")
                counts[table.name] = copied
                if on_table is not None:
                    on_table(table.name, copied)
            if writer.dialect.name == "postgresql":
                # Rows came with their ids: move each serial past them for the rows to come.
                for table in TABLES:
                    if "seq" in table.c and table.c.seq.autoincrement is True:
                        writer.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'seq'), "
                                f"COALESCE((SELECT MAX(seq) FROM {table.name}), 0) + 1, false)"
                            )
                        )
    finally:
        engine.dispose()
        dst.close()
    return counts
