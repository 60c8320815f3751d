"""The server's log set-up: every handler withholds personal data.

Apart from ``observability`` (which needs the web framework) so that every command can
set its logging up without importing the app.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

# The server's log is read by operators and shipped to log stores that the access rules of
# the exchange do not reach; the ledger is where who saw which citizen is recorded. So the
# log names routes, never a citizen, a filter's values, a link's signature, or a row's values.
WITHHELD = "(withheld)"
# Path segments that are a citizen's key: a lookup's or a live call's key, the citizen of an access log.
_PERSONAL_SEGMENT = re.compile(r"^(/api/v1/exchange/[^/?]+/(?:records|live)/|/api/v1/citizens/)[^/?]+")
# PostgreSQL's errors quote the offending row or key ("DETAIL:  Failing row contains (...)",
# "Key (citizen_id)=(...) already exists"); SQLAlchemy's own parameters are hidden already
# (hide_parameters on the engines).
_DATABASE_DETAIL = re.compile(r"^DETAIL:.*$", re.MULTILINE)


def withhold_path(path: str) -> str:
    """``path`` as the log may show it: without a citizen's key, and without the query string."""
    path, query_mark, _ = path.partition("?")
    return _PERSONAL_SEGMENT.sub(rf"\g<1>{WITHHELD}", path) + (f"?{WITHHELD}" if query_mark else "")


class WithholdPersonalData(logging.Filter):
    """Rewrites a log record so that it carries no personal data (see ``WITHHELD``), on every handler of the server."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            record.args = (client, method, withhold_path(str(path)), version, status)
            return True
        message = record.getMessage()
        withheld = _DATABASE_DETAIL.sub(f"DETAIL:  {WITHHELD}", message)
        if withheld != message:
            record.msg, record.args = withheld, None
        if record.exc_info and not record.exc_text:
            # The formatter takes exc_text as the traceback once it is set.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _DATABASE_DETAIL.sub(f"DETAIL:  {WITHHELD}", record.exc_text)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging set-up, with every handler withholding personal data and govshare's own loggers on it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"withhold": {"()": WithholdPersonalData}}
    for handler in config["handlers"].values():
        handler["filters"] = ["withhold"]
    config["formatters"]["named"] = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(name)s: %(message)s"}
    config["handlers"]["named"] = {"formatter": "named", "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                   "filters": ["withhold"]}
    config["root"] = {"handlers": ["named"], "level": "WARNING"}
    return config
