"""Errors of the connectors, each with a stable problem type."""

from __future__ import annotations

from govshare.errors import GovshareError


class SourceNotBound(GovshareError):
    status, type, title = 404, "source-not-bound", "No source bound"


class InvalidSource(GovshareError):
    status, type, title = 422, "invalid-source", "Invalid source binding"


class SchemaDrift(GovshareError):
    status, type, title = 409, "source-schema-drift", "The source's columns changed"


class SourceFailed(GovshareError):
    status, type, title = 502, "source-failed", "The source could not be read"


class SyncRunning(GovshareError):
    status, type, title = 409, "sync-running", "A sync of this dataset is running"


class SourceTimeout(GovshareError):
    status, type, title = 504, "source-timeout", "The source did not answer in time"


class SourceAddressRefused(InvalidSource):
    type, title = "outbound-refused", "The source's address is not one the exchange calls"
