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


class ProtectionUnavailable(GovshareError):
    """The store the replicas share their rate limits in (Redis, ``GOVSHARE_REDIS_URL``) cannot be reached: the call is
    refused rather than served without the limit."""

    status, type, title = 503, "protection-unavailable", "The shared rate-limit store is unavailable"


class LiveProtectionUnavailable(ProtectionUnavailable):
    """The store shared by replicas for live services' circuit breakers and calls in flight (and rate limits) cannot be
    reached: the provider is not called unguarded."""

    type, title = "live-protection-unavailable", "Live services' protection is unavailable"


# --- citizen control (exchange.citizens) ---


class ConsentNotFound(NotFound):
    type, title = "consent-not-found", "No such consent"


class InvalidConsent(InvalidInput):
    type, title = "invalid-consent", "Invalid consent"


class RequestNotFound(NotFound):
    type, title = "request-not-found", "No such request"


class InvalidRequest(InvalidInput):
    type, title = "invalid-request", "Invalid request"


class RequestAwaitingCitizen(Conflict):
    type, title = "request-awaiting-citizen", "The citizen has not decided yet"


class RequestDecided(Conflict):
    type, title = "request-decided", "The citizen has decided this request already"


class RequestRefused(Forbidden):
    type, title = "request-refused", "The citizen refused this request"


class RequestExpired(GovshareError):
    """An explicit request past its last day (``GOVSHARE_CITIZEN_REQUEST_DAYS``) can be neither approved nor collected.

    410, not 409: 409 says "not now" (the service's 409 while the citizen decides invites it
    to ask again), while an expired request never comes back and its preview is erased: asking
    again is the only way on, for the citizen's portal and the service alike.
    """

    status, type, title = 410, "request-expired", "The request has expired"


class RequestDelivered(GovshareError):
    """An explicit request is delivered once: a second read finds nothing (its preview is erased at delivery)."""

    status, type, title = 410, "request-delivered", "Delivered already"


class ExplicitRequestRequired(Forbidden):
    type, title = "explicit-request-required", "This dataset is delivered only on the citizen's explicit approval"



class ConsentLapsed(Conflict):
    """A file made under consents one of which no longer holds: a withdrawal takes effect on the next call, downloads too."""

    type, title = "consent-lapsed", "A consent this file was made under no longer holds"
