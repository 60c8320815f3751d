"""Errors of the exchange, each with a stable problem ``type``."""

from __future__ import annotations

from approvals.errors import GrantOutdated, KeyLookupNotGranted  # noqa: F401 (raised by the scope; named here too)
from govshare.errors import Conflict, Forbidden, GovshareError, InvalidInput, NotFound


class NoActiveGrant(Forbidden):
    type, title = "no-active-grant", "No active grant"


class GrantPaused(NoActiveGrant):
    """Every delivery under a paused grant answers this (403), whatever the path: ``approvals.service.grant_state`` says paused."""

    type, title = "grant-paused", "The grant is paused"


class SharingTokenNotFound(NotFound):
    type, title = "sharing-token-not-found", "No such sharing token"


class SharingTokenRevoked(Conflict):
    type, title = "sharing-token-revoked", "The sharing token was revoked already"


class RecordNotFound(NotFound):
    type, title = "record-not-found", "Nothing within the grant"


class NoData(NotFound):
    type, title = "no-data", "The dataset has no data yet"


class InvalidQuery(InvalidInput):
    type, title = "invalid-query", "Invalid query"


class RateLimited(GovshareError):
    status, type, title = 429, "rate-limited", "Too many requests"


class ExtractNotFound(NotFound):
    type, title = "extract-not-found", "No such extract"


class LinkInvalid(Forbidden):
    type, title = "link-invalid", "Download link forged or expired"


class LedgerUnavailable(GovshareError):
    """The access ledger cannot keep up (its record store refuses writes): no call is served that it could not account for."""

    status, type, title = 503, "ledger-unavailable", "Access ledger unavailable"

    def __init__(self, detail: str = "the access ledger cannot write to the record store now, so no data is served; try again shortly",
                 **kwargs) -> None:
        kwargs.setdefault("headers", {"Retry-After": "5"})
        super().__init__(detail, **kwargs)


class LiveProviderFailed(GovshareError):
    """The provider of a live service answered with an error, or with something that is not its items."""

    status, type, title = 502, "live-provider-error", "The provider's service failed"


class LiveAnswerTooLarge(LiveProviderFailed):
    type, title = "live-answer-too-large", "The provider's answer is too large"


class LiveProviderTimeout(GovshareError):
    status, type, title = 504, "live-provider-timeout", "The provider's service did not answer in time"


class LiveProviderUnavailable(GovshareError):
    """The provider failed repeatedly: calls fail fast until a probe after the cool-down succeeds."""

    status, type, title = 503, "live-provider-unavailable", "The provider's service is unavailable"


class LiveBusy(GovshareError):
    status, type, title = 429, "live-busy", "Too many live calls in flight for this grant"
