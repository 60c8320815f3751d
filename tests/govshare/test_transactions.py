"""One transaction per request: committed before the response is sent, rolled back on error."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy
from fastapi import APIRouter
from sqlalchemy import event, text
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from govshare.db import DbSession
from govshare.models import Department


def test_the_commit_happens_before_the_response_starts_and_errors_roll_back(app, database):
    order: list[str] = []
    probe = APIRouter()

    @probe.post("/probe/department")
    def write(session: DbSession) -> dict:
        session.add(Department(code="PROBE", name="probe"))
        return {"ok": True}

    @probe.post("/probe/failing")
    def failing(session: DbSession) -> dict:
        session.add(Department(code="HALF", name="never stored"))
        session.flush()
        raise RuntimeError("fails after writing")

    app.include_router(probe)

    def record_commit(session: Session) -> None:
        order.append("commit")

    async def outermost(scope, receive, send):
        async def watching_send(message):
            if message["type"] == "http.response.start":
                order.append("response")
            await send(message)
        await app(scope, receive, watching_send)

    event.listen(Session, "after_commit", record_commit)
    try:
        with TestClient(outermost, base_url="http://localhost", raise_server_exceptions=False) as client:
            assert client.post("/probe/department").status_code == 200
            assert order[-2:] == ["commit", "response"]  # a client never holds a 2xx for an uncommitted write
            assert client.post("/probe/failing").status_code == 500
    finally:
        event.remove(Session, "after_commit", record_commit)
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM departments WHERE code = 'PROBE'")).scalar_one() == 1
        assert connection.execute(text("SELECT count(*) FROM departments WHERE code = 'HALF'")).scalar_one() == 0


def test_a_failed_statement_names_no_parameter_in_its_error_or_the_log(database, caplog):
    # A citizen's ID in a statement that fails (here a ledger key for an entry that does not
    # exist) must not reach the server log through the error's text. (PostgreSQL's own message
    # may quote a value, as in "Failing row contains"; this one names only the missing entry.)
    citizen_id = "330102199001011234"
    with pytest.raises(sqlalchemy.exc.IntegrityError) as failed:
        with database.transaction() as session:
            session.execute(sqlalchemy.text("INSERT INTO access_log_keys (entry_id, key) VALUES (:entry, :key)"),
                            {"entry": 987654321, "key": citizen_id})
    logging.getLogger("test").exception("as the ledger writer logs it", exc_info=failed.value)
    assert citizen_id not in str(failed.value)
    assert "hidden due to hide_parameters" in str(failed.value)
    assert citizen_id not in caplog.text
