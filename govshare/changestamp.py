"""The change stamp: one row whose value changes, in the same transaction, with any change to the state a call checks.

An interface call checks its token (revoked? client disabled?), its grant (revoked,
paused, its period, its columns and filter), the dataset (its description, its newest
version). Reading all of that on every call cost more than the lookup itself; so a
server keeps what it resolved and reads only this stamp on each call: while the stamp
is what it was when the state was resolved, nothing it depends on has changed, in this
process or in any other sharing the record store. A revocation or a pause commits a
new stamp with it, so the next call, on any replica, resolves afresh.

The stamp is set by the record store's connections themselves: a transaction in which any
statement inserted, updated or deleted rows of a table in ``WATCHED_TABLES`` sets a new
stamp just before it commits, whatever sent the statement (the ORM's flush, an ``update()`` through a
session, plain SQL on a bare connection of any govshare process). A state that comes from
a new table is watched by adding the table's name here. The event is on the statements, not
the ORM's flush: a flush misses writes made around the session, and an existing test (a
grant's end date set with plain SQL) is exactly such a write. Migrations do not bump it (the
table may not exist yet when they run); a server is restarted after one anyway.

A random stamp, not a counter (as ``directory_state``): a store emptied or restored
cannot bring back a stamp a server has seen.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

TABLE = "change_stamp"
# The tables whose rows decide whether a call is served and how: tokens and their
# clients, grants (revocation, pause and resume, dates) and their applications, and the
# datasets with their versions (a new snapshot, a changed description), and a live dataset's
# credentials for its provider's API (kept by a live call in the clear while the stamp holds).
WATCHED_TABLES = frozenset({"issued_tokens", "clients", "departments", "grants", "applications", "datasets",
                            "dataset_versions", "live_credentials"})

READ_SQL = f"SELECT stamp FROM {TABLE} WHERE id = 1"
_BUMP_SQL = f"UPDATE {TABLE} SET stamp = %s WHERE id = 1"
# The table a data-changing statement writes (as SQLAlchemy and people write them: an optional
# quote, schema or not); only the first words are looked at.
_WRITES = re.compile(r'\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+(?:["`]?\w+["`]?\.)?["`]?(\w+)', re.IGNORECASE)
SKIP_OPTION = "govshare_change_stamp_off"  # an execution option: a migration's connection


def writes_watched(statement: str) -> bool:
    """Whether ``statement`` changes rows of a watched table."""
    found = _WRITES.match(statement)
    return found is not None and found.group(1).lower() in WATCHED_TABLES


_WROTE = "govshare_change_stamp_due"  # connection.info: a watched table was written in the open transaction


@event.listens_for(Engine, "before_cursor_execute")
def _note_write(connection: Any, cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool) -> None:
    if not writes_watched(statement) or connection.get_execution_options().get(SKIP_OPTION):
        return
    if connection._is_autocommit_isolation():  # no transaction to join: each statement commits itself
        _bump(connection, cursor.connection)
    else:
        connection.info[_WROTE] = True


@event.listens_for(Engine, "commit")
def _bump_at_commit(connection: Any) -> None:
    # Set last, just before the COMMIT: whatever else the transaction locks, it holds the
    # stamp's row only while it commits, so writers queue on it briefly and never while
    # waiting for another lock (two transactions locking rows in opposite orders).
    if connection.info.pop(_WROTE, False):
        _bump(connection, connection.connection.dbapi_connection)


@event.listens_for(Engine, "rollback")
def _forget_write(connection: Any) -> None:
    if not connection.invalidated:  # an invalidated connection is thrown away, with what it noted
        connection.info.pop(_WROTE, None)


def _bump(connection: Any, dbapi_connection: Any) -> None:
    # A cursor of its own on the same DBAPI connection, so the same transaction, and around
    # SQLAlchemy's events (this statement is not one it watches, nor one to refuse).
    cursor = dbapi_connection.cursor()
    try:
        sql = _BUMP_SQL if connection.dialect.paramstyle in ("format", "pyformat") else _BUMP_SQL.replace("%s", "?")
        cursor.execute(sql, (uuid.uuid4().hex,))
    finally:
        cursor.close()
