"""Text a record store cannot keep (a NUL character, a lone surrogate), found by field.

Here in the shell, not in ``schemas``, because both the schema checks and the error
handler (``govshare.errors``, for a body model's text) ask it, and ``schemas`` leans on
``govshare.errors``.
"""

from __future__ import annotations

from typing import Any


def path_text(path: Any) -> str:
    """A field's path as the errors name it (``items[2].name``); a name that is no text is shown escaped."""
    text = ""
    for part in path:
        if isinstance(part, str) and text_fault(part) is not None:  # a name that is no text, shown escaped
            part = part.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def unstorable_text_at(document: Any) -> list[tuple[list[Any], dict[str, str]]]:
    """Text a record store cannot hold (or not on every backend alike), in names and values alike.

    A lone surrogate (legal in a JSON escape) is refused by SQLite and PostgreSQL alike, and
    a NUL character by PostgreSQL, both only when the row is written and with an error that
    names no field; here either is refused up front, by field, like any other rule, so a
    document valid on one record store is valid on every one.
    """
    found: list[tuple[list[Any], dict[str, str]]] = []
    pending: list[tuple[Any, list[Any]]] = [(document, [])]
    while pending:
        value, path = pending.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                # A name that is no text is the field at fault; what it holds is not looked at.
                pending.append((child, [*path, key]) if text_fault(key) is None else (key, [*path, key]))
        elif isinstance(value, list):
            pending.extend((child, [*path, index]) for index, child in enumerate(value))
        elif isinstance(value, str) and (fault := text_fault(value)) is not None:
            found.append((path, {"field": path_text(path), "rule": "text", "message": f"is not valid text: it holds {fault}"}))
    return found


def text_fault(value: str) -> str | None:
    """What keeps ``value`` out of a record store (a lone surrogate, a NUL character), or None."""
    if "\x00" in value:
        return "a NUL character (\\u0000), which PostgreSQL cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (an unpaired \\ud800-\\udfff escape)"
    return None


def unstorable_text(document: Any) -> list[dict[str, str]]:
    """The fields of ``document`` holding text a record store cannot keep (see ``unstorable_text_at``), in document order."""
    return [described for _, described in sorted(unstorable_text_at(document), key=lambda pair: [str(part) for part in pair[0]])]
