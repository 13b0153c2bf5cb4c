"""One record's event fields as its format holds them, before they are checked.

Each inbound format (Pinpoint, generic, Segment/RudderStack, a declared mapping) only says where its
fields are; :mod:`pia.core.events` checks them all the same way, so every format gets the same
limits, and a bad value is reported under the name the producer used (``properties.url``,
``detail.user``), not an internal one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Found:
    value: object
    name: str


@dataclass(frozen=True)
class Fields:
    event_type: Found
    user_id: Found
    timestamp: Found
    attributes: Found
    metrics: Found
    event_id: Found
    endpoint_id: Found


def id_text(value: object) -> object:
    """Integer ids as their decimal text: Segment's and most in-house producers send numeric user
    ids as JSON numbers, and ``42`` and ``"42"`` are the same user."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value
