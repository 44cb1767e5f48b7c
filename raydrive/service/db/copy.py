"""``raydrive service migrate``: copy every row of one service database into another."""

from __future__ import annotations

import os
from collections.abc import Callable

from sqlalchemy import func, insert, select, text

from raydrive.core.errors import RaydriveError
from raydrive.service.db import describe_database, open_store
from raydrive.service.db.tables import TABLES

__all__ = ["DatabaseCopyError", "copy_database"]


class DatabaseCopyError(RaydriveError):
    """The copy was refused or did not complete (the target was left unchanged)."""


def copy_database(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    batch: int = 1000,
    on_table: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Copy every pipeline, run, run event, checkpoint and log of ``source`` into ``target``.

    Both are brought to the current schema first (an older source is upgraded in place, as a
    service start would). The source is read in one transaction (a consistent snapshot; on
    SQLite it also keeps writers out for the copy's duration), the target is written in one
    transaction, so a failed copy leaves the target as it was. Ids and event numbers are kept,
    so clients resume streams with their ``Last-Event-ID`` against the new database.

    :param batch: rows per insert.
    :param on_table: called with each table's name and row count once it is copied.
    :returns: rows copied per table.
    :raises DatabaseCopyError: the target already holds pipelines, or the counts differ.
    """
    src = open_store(source)
    try:
        dst = open_store(target)
    except BaseException:
        src.close()
        raise
    counts: dict[str, int] = {}
    try:
        with src.engine.begin() as reader, dst.engine.begin() as writer:
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
        src.close()
        dst.close()
    return counts
