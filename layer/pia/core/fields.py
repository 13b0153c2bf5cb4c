"""One record's event fields as its format holds them, before they are checked.

Each inbound format (Pinpoint, generic, Segment/RudderStack, a declared mapping) only says where its
fields are; :mod:`pia.core.events` checks them all the same way, so every format gets the same
limits, and a bad value is reported under the name the producer used (``properties.url``,
``detail.user``), not an internal one.
"""

from __future__ import annotations

from typing import NamedTuple


class FieldNames(NamedTuple):
    """Where a format keeps each field, for error messages: built once per format, not per record."""

    event_type: str
    user_id: str
    timestamp: str
    attributes: str
    metrics: str
    event_id: str
    endpoint_id: str


class Fields(NamedTuple):
    """The values found in one record (immutable, and one cheap object per record)."""

    names: FieldNames
    event_type: object
    user_id: object
    timestamp: object
    attributes: object
    metrics: object
    event_id: object
    endpoint_id: object = None


def id_text(value: object) -> object:
    """Integer ids as their decimal text: Segment's and most in-house producers send numeric user
    ids as JSON numbers, and ``42`` and ``"42"`` are the same user."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value
