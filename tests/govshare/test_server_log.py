"""The server's log names routes and errors, never a citizen, a filter's values, a link's signature or a row's values."""

from __future__ import annotations

import io
import logging
import uuid

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError
from uvicorn.logging import AccessFormatter

from govshare.observability import WITHHELD, WithholdPersonalData, log_config, withhold_path
from tests.connectors.conftest import POSTGRES_URL
from tests.exchange.test_soak import Arranged, _token, served

CITIZEN = "11010119900101001X"


def _logged(logger_name: str, emit, formatter: logging.Formatter | None = None) -> str:
    """What a handler of the server's kind (with the filter) writes when ``emit(logger)`` logs."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(WithholdPersonalData())
    if formatter is not None:
        handler.setFormatter(formatter)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.propagate, level = False, logger.level
    logger.setLevel(logging.INFO)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(level)
    return buffer.getvalue()


def test_a_postgresql_error_in_the_log_keeps_its_kind_and_loses_the_row_it_quotes():
    # A real PostgreSQL refusal: its DETAIL quotes the row ("Failing row contains (...)").
    engine = create_engine(POSTGRES_URL, hide_parameters=True)
    table = f"log_probe_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as connection:
            connection.execute(text(f"CREATE TABLE {table} (citizen_id text, district text NOT NULL)"))
        with pytest.raises(IntegrityError) as refused, engine.begin() as connection:
            connection.execute(text(f"INSERT INTO {table} VALUES (:citizen, NULL)"), {"citizen": CITIZEN})
        assert CITIZEN in str(refused.value)  # what would have reached the log

        def emit(logger):
            try:
                raise refused.value
            except IntegrityError:
                logger.exception("could not write 1 ledger lines at once")
            logger.warning("record store busy: %s", refused.value.orig)

        written = _logged("govshare.probe", emit)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    assert CITIZEN not in written
    assert written.count(f"DETAIL:  {WITHHELD}") >= 2  # in the traceback (psycopg's, SQLAlchemy's) and in the message
    assert "NotNullViolation" in written and 'null value in column "district"' in written  # still says what failed
    assert "could not write 1 ledger lines at once" in written


def test_the_access_log_shows_the_route_without_the_citizen_or_the_query():
    assert withhold_path(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{CITIZEN}") == f"/api/v1/exchange/PSB-HOUSEHOLD/records/{WITHHELD}"
    assert withhold_path(f"/api/v1/exchange/PSB-RESIDENTS/live/{CITIZEN}") == f"/api/v1/exchange/PSB-RESIDENTS/live/{WITHHELD}"
    assert withhold_path(f"/api/v1/citizens/{CITIZEN}/access-log?limit=5") == f"/api/v1/citizens/{WITHHELD}/access-log?{WITHHELD}"
    assert withhold_path("/api/v1/extracts/abc/download?expires=1&signature=s3cret") == f"/api/v1/extracts/abc/download?{WITHHELD}"
    assert withhold_path("/api/v1/datasets/PSB-HOUSEHOLD") == "/api/v1/datasets/PSB-HOUSEHOLD"

    def emit(logger):
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/api/v1/exchange/X/records/{CITIZEN}?district=02", "1.1", 200)

    written = _logged("uvicorn.access", emit, AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    assert written.strip() == f'127.0.0.1:5000 - "GET /api/v1/exchange/X/records/{WITHHELD}?{WITHHELD} HTTP/1.1" 200 OK'


def test_the_served_log_names_no_citizen_looked_up(client, factory, settings, tmp_path):
    arranged = Arranged(client, factory)
    key = arranged.inside[0]
    with served(settings, tmp_path) as (base, server):
        headers = {"Authorization": f"Bearer {_token(base, arranged.service)}"}
        assert httpx.get(f"{base}/api/v1/exchange/PSB-HOUSEHOLD/records/{key}", headers=headers).status_code == 200
        queried = httpx.get(f"{base}/api/v1/exchange/PSB-HOUSEHOLD/records", params={"citizen_id": key, "limit": 1}, headers=headers)
        assert queried.status_code == 200, queried.text
        log = server.log.read_text()
    assert f'"GET /api/v1/exchange/PSB-HOUSEHOLD/records/{WITHHELD} HTTP/1.1" 200' in log
    assert key not in log
    assert log_config()["root"]["handlers"] == ["named"]  # govshare's own warnings go through the same filter


_COMMAND_LOGS = """
import sys, uuid
from sqlalchemy import create_engine, text
from govshare import cli
if sys.argv[1] == "configured":
    cli.configure_logging()  # what every govshare command does first (cli.main)
import logging
engine = create_engine(sys.argv[2], hide_parameters=True)
table = f"log_probe_{uuid.uuid4().hex[:8]}"
with engine.begin() as connection:
    connection.execute(text(f"CREATE TABLE {table} (citizen_id text, district text NOT NULL)"))
try:
    with engine.begin() as connection:
        connection.execute(text(f"INSERT INTO {table} VALUES (:citizen, NULL)"), {"citizen": sys.argv[3]})
except Exception as error:
    logging.getLogger("govshare.connectors").warning("sync run 7: heartbeat not recorded", exc_info=True)
    logging.getLogger("govshare.connectors").warning("sync of X failed: %s", error.orig)
finally:
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
"""


@pytest.mark.parametrize("setup", ["configured", "python's default"])
def test_what_a_command_logs_withholds_personal_data_as_the_server_does(setup):
    # govshare sync and the other commands log through the server's configuration: a real
    # PostgreSQL refusal quoting a row reaches stderr without it (and with Python's
    # default handler, as before, it would not).
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _COMMAND_LOGS, setup, POSTGRES_URL, CITIZEN],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "heartbeat not recorded" in done.stderr and "NotNullViolation" in done.stderr
    if setup == "configured":
        assert CITIZEN not in done.stderr
        assert f"DETAIL:  {WITHHELD}" in done.stderr
        assert "govshare.connectors" in done.stderr  # which part of govshare spoke
    else:
        assert CITIZEN in done.stderr
