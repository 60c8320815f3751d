"""Where extract files live in the data store."""

from __future__ import annotations


def extract_key(name: str) -> str:
    """The store key of the extract file ``name``."""
    return f"extracts/{name}"
