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

from pia.core.fields import Fields, Found, id_text

SEGMENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
IDENTITY_KEYS = ("messageId", "userId", "anonymousId")


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
    timestamp = "timestamp" if doc.get("timestamp") is not None else "originalTimestamp"
    return Fields(
        event_type=Found(doc.get("event"), "event"),
        user_id=Found(id_text(doc.get("userId")), "userId"),
        timestamp=Found(doc.get(timestamp), timestamp),
        attributes=Found(attributes, "properties"),
        metrics=Found(metrics, "properties"),
        event_id=Found(doc.get("messageId"), "messageId"),
        endpoint_id=Found(None, "context.device.id"),
    )
