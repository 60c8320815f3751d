"""Errors of approvals, each with a stable problem ``type``."""

from __future__ import annotations

from govshare.errors import Conflict, Forbidden, InvalidInput, NotFound


class ApplicationNotFound(NotFound):
    type, title = "application-not-found", "No such application"


class GrantNotFound(NotFound):
    type, title = "grant-not-found", "No such grant"


class InspectionFailed(InvalidInput):
    type, title = "inspection-failed", "The application fails the normative inspection"


class InvalidDecision(InvalidInput):
    type, title = "invalid-decision", "Invalid decision"


class WrongState(Conflict):
    type, title = "wrong-state", "The application's state forbids this"


class DecidedConcurrently(Conflict):
    type, title = "decided-concurrently", "Someone else changed this application at the same time"


class NotYourApplication(Forbidden):
    type, title = "not-your-application", "The application belongs to another department"


class NotYourGrant(Forbidden):
    type, title = "not-your-grant", "Only a data manager or the providing department may do this to the grant"


class OwnDepartmentDecision(Forbidden):
    type, title = "own-department-decision", "Nobody decides an application of their own department"


class GrantOutdated(Conflict):
    """The snapshot read lacks an item the grant uses (the provider dropped it): the grant cannot be served as approved."""

    type, title = "grant-outdated", "The dataset no longer has a granted item"


class KeyLookupNotGranted(Forbidden):
    """A lookup by key under a grant that does not give the key in the clear: it would read rows by an identity not granted."""

    type, title = "key-lookup-not-granted", "Lookups by key are not granted"
