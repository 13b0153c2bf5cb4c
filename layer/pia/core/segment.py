"""Segment's ``track`` spec, which RudderStack also follows: where its event fields are.

``userId`` is the user, ``event`` the event type, ``timestamp`` the time (``originalTimestamp``
when a library wrote the record before Segment stamped it) and ``messageId`` the event id, which
keeps a producer's resend from counting twice. ``properties`` holds both kinds of values a rule
reads: strings and booleans are attributes, numbers are metrics; nested objects and lists are
nothing a rule can name, so they are left out.

A call other than ``track`` (identify, page, screen, group, alias) describes a user, not an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pia.core.fields import FieldNames, Fields, id_text

SEGMENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
IDENTITY_KEYS = ("messageId", "userId", "anonymousId")
NAMES = FieldNames("event", "userId", "timestamp", "properties", "properties", "messageId", "endpoint_id")
ORIGINAL_TIME_NAMES = NAMES._replace(timestamp="originalTimestamp")


def is_segment(doc: Mapping[str, Any]) -> bool:
    """Every Segment or RudderStack call carries its ``type`` and a ``messageId`` or user key."""
    kind = doc.get("type")
    return isinstance(kind, str) and kind in SEGMENT_TYPES and any(key in doc for key in IDENTITY_KEYS)


def segment_fields(doc: Mapping[str, Any]) -> Fields | None:
    """The fields of a ``track`` call; ``None`` for the other calls."""
    if doc.get("type") != "track":
        return None
    properties = doc.get("properties")
    attributes: object = properties
    metrics: dict[str, object] = {}
    if isinstance(properties, dict):
        attributes = {name: value for name, value in properties.items() if isinstance(value, str | bool)}
        metrics = {
            name: value
            for name, value in properties.items()
            if isinstance(value, int | Decimal | float) and not isinstance(value, bool)
        }
    timestamp = doc.get("timestamp")
    names = NAMES
    if timestamp is None:
        timestamp, names = doc.get("originalTimestamp"), ORIGINAL_TIME_NAMES
    return Fields(
        names,
        doc.get("event"),
        id_text(doc.get("userId")),
        timestamp,
        attributes,
        metrics,
        doc.get("messageId"),
    )
