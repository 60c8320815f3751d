"""Scratch databases for benchmarks: filled, measured, then thrown away."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import create_engine, make_url, text


def scratch_schema(url: str | None, name: str) -> tuple[str | None, Callable[[], None] | None]:
    """On PostgreSQL, a fresh schema for this run: the URL pointing into it and the function that drops it.

    Any other URL (or None, for a SQLite file the caller picks) is returned as it is, with no cleanup.
    """
    if not url or not url.startswith("postgresql"):
        return url, None
    schema = f"bench_{name}_{int(time.time())}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def cleanup() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    return scoped, cleanup
