"""Errors of evaluation, each with a stable problem ``type``."""

from __future__ import annotations

from govshare.errors import Conflict, Forbidden, InvalidInput, NotFound


class NotDelivered(Conflict):
    type, title = "not-delivered", "Nothing has been delivered under this application yet"


class RatingClosed(Conflict):
    type, title = "rating-closed", "The rating can no longer be changed"


class InvalidRating(InvalidInput):
    type, title = "invalid-rating", "Invalid rating"


class NotAParty(Forbidden):
    type, title = "not-a-party", "Only the applying and the providing department rate an application"


class CorrectionNotFound(NotFound):
    type, title = "correction-not-found", "No such correction request"


class NoGrantOnDataset(Forbidden):
    type, title = "no-grant-on-dataset", "The department holds no grant on this dataset"


class InvalidCorrection(InvalidInput):
    type, title = "invalid-correction", "Invalid correction request"


class CorrectionAnswered(Conflict):
    type, title = "correction-answered", "The correction request was answered already"


class InvalidPeriod(InvalidInput):
    type, title = "invalid-period", "Invalid period"
