"""Errors of the directory, each with a stable problem ``type``."""

from __future__ import annotations

from govshare.errors import Conflict, Forbidden, InvalidInput, NotFound


class DatasetNotFound(NotFound):
    type, title = "dataset-not-found", "No such dataset"


class DatasetExists(Conflict):
    type, title = "dataset-exists", "Dataset code already registered"


class DatasetRetired(Conflict):
    type, title = "dataset-retired", "Dataset is retired"


class VersionConflict(Conflict):
    type, title = "version-conflict", "Another version was stored at the same time"


class NotOwnDepartment(Forbidden):
    type, title = "not-own-department", "Dataset belongs to another department"


class InvalidDataset(InvalidInput):
    type, title = "invalid-dataset", "Invalid dataset description"


class InvalidFile(InvalidInput):
    type, title = "invalid-file", "The file cannot be read"


class VersionRefused(InvalidInput):
    type, title = "version-refused", "The data does not match the dataset's items"
