"""Inbound events: Amazon Pinpoint's event-stream records, or the small generic schema.

A record is parsed into an :class:`Event`, marked :class:`Skipped` (a valid event this engine does
not count), or rejected with :class:`RecordRejected` naming the field at fault. Rejection is per
record: its neighbours in the batch are unaffected.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pia.limits import (
    MAX_ATTRIBUTE_NAME,
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
    MAX_ENDPOINT_ID,
    MAX_EVENT_TYPE,
    MAX_METRICS,
    MAX_RECORD_BYTES,
    MAX_USER_ID,
)
from pia.rules import OUTPUT_PREFIX


class EventFormat(StrEnum):
    PINPOINT = "pinpoint"
    GENERIC = "generic"


@dataclass(frozen=True)
class Event:
    user_id: str
    event_type: str
    timestamp: datetime
    attributes: Mapping[str, str]
    metrics: Mapping[str, Decimal]
    endpoint_id: str | None = None
    event_id: str | None = None
    format: EventFormat = EventFormat.PINPOINT

    def metric_for(self, metric_name: str | None) -> Decimal | None:
        """The value a rule sums: the named metric, or the event's only metric.

        With several metrics and no MetricName the choice would be a guess, so the event adds
        nothing to the sum (it still counts) and the caller reports it as ambiguous.
        """
        if metric_name is not None:
            return self.metrics.get(metric_name)
        if len(self.metrics) == 1:
            return next(iter(self.metrics.values()))
        return None


class SkipReason(StrEnum):
    SYSTEM_EVENT = "system_event"
    OWN_OUTPUT = "own_output"
    NO_USER = "no_user"


@dataclass(frozen=True)
class Skipped:
    reason: SkipReason
    event_type: str


class RecordRejected(ValueError):
    """A record that can never be counted; retrying it would only block the shard."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a number")


def decode_json(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordRejected("data", f"{len(payload)} bytes is over the {MAX_RECORD_BYTES}-byte record limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordRejected("data", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        document = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        raise RecordRejected("data", f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise RecordRejected("data", "not a JSON object")
    return document


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RecordRejected("data", "not base64") from None


def _bounded_text(value: object, field: str, limit: int, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise RecordRejected(field, "missing")
        return None
    if not isinstance(value, str):
        raise RecordRejected(field, f"must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise RecordRejected(field, f"{len(value)} characters is over the limit of {limit}")
    return value


def _attributes(raw: object, field: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecordRejected(field, "must be an object of string values")
    if len(raw) > MAX_ATTRIBUTES:
        raise RecordRejected(field, f"{len(raw)} attributes is over the limit of {MAX_ATTRIBUTES}")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if len(name) > MAX_ATTRIBUTE_NAME:
            raise RecordRejected(f"{field}.{name[:20]}…", f"name is over {MAX_ATTRIBUTE_NAME} characters")
        if not isinstance(value, str):
            value = str(value)
        if len(value) > MAX_ATTRIBUTE_VALUE:
            raise RecordRejected(
                f"{field}.{name}", f"value of {len(value)} characters is over the limit of {MAX_ATTRIBUTE_VALUE}"
            )
        out[name] = value
    return out


def _metrics(raw: object, field: str) -> dict[str, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecordRejected(field, "must be an object of numbers")
    if len(raw) > MAX_METRICS:
        raise RecordRejected(field, f"{len(raw)} metrics is over the limit of {MAX_METRICS}")
    out: dict[str, Decimal] = {}
    for name, value in raw.items():
        if len(name) > MAX_ATTRIBUTE_NAME:
            raise RecordRejected(f"{field}.{name[:20]}…", f"name is over {MAX_ATTRIBUTE_NAME} characters")
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            raise RecordRejected(f"{field}.{name}", f"{str(value)[:40]!r} is not a number")
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if not number.is_finite():
            raise RecordRejected(f"{field}.{name}", "not a finite number")
        out[name] = number
    return out


def _timestamp(raw: object, field: str) -> datetime:
    if isinstance(raw, bool):
        raise RecordRejected(field, "not a timestamp")
    if isinstance(raw, int | Decimal):
        millis = Decimal(raw)
        if not millis.is_finite() or not 0 <= millis < Decimal(253402300800000):
            raise RecordRejected(field, f"{raw} is not an epoch time in milliseconds")
        return datetime.fromtimestamp(float(millis) / 1000, tz=UTC)
    if isinstance(raw, str) and raw:
        text = raw.strip()
        if text.isdigit():
            return _timestamp(int(text), field)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise RecordRejected(field, f"{raw[:40]!r} is not ISO 8601 or epoch milliseconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    raise RecordRejected(field, "missing")


def _skip_reason(event_type: str) -> SkipReason | None:
    if event_type.startswith("_"):
        return SkipReason.SYSTEM_EVENT
    if event_type.startswith(OUTPUT_PREFIX):
        return SkipReason.OWN_OUTPUT
    return None


def _parse_pinpoint(doc: Mapping[str, Any]) -> Event | Skipped:
    event_type = _bounded_text(doc.get("event_type"), "event_type", MAX_EVENT_TYPE)
    assert event_type is not None
    reason = _skip_reason(event_type)
    if reason is not None:
        return Skipped(reason, event_type)
    endpoint = doc.get("endpoint") if isinstance(doc.get("endpoint"), dict) else {}
    user = endpoint.get("User") if isinstance(endpoint.get("User"), dict) else {}
    user_id = _bounded_text(user.get("UserId"), "endpoint.User.UserId", MAX_USER_ID, required=False)
    if user_id is None:
        return Skipped(SkipReason.NO_USER, event_type)
    client = doc.get("client") if isinstance(doc.get("client"), dict) else {}
    endpoint_id = _bounded_text(endpoint.get("Id"), "endpoint.Id", MAX_ENDPOINT_ID, required=False)
    if endpoint_id is None:
        endpoint_id = _bounded_text(client.get("client_id"), "client.client_id", MAX_ENDPOINT_ID, required=False)
    raw_ts = doc.get("event_timestamp", doc.get("arrival_timestamp"))
    return Event(
        user_id=user_id,
        event_type=event_type,
        timestamp=_timestamp(raw_ts, "event_timestamp"),
        attributes=_attributes(doc.get("attributes"), "attributes"),
        metrics=_metrics(doc.get("metrics"), "metrics"),
        endpoint_id=endpoint_id,
        event_id=_bounded_text(doc.get("event_id"), "event_id", MAX_ENDPOINT_ID, required=False),
        format=EventFormat.PINPOINT,
    )


def _parse_generic(doc: Mapping[str, Any]) -> Event | Skipped:
    event_type = _bounded_text(doc.get("event_type"), "event_type", MAX_EVENT_TYPE)
    assert event_type is not None
    reason = _skip_reason(event_type)
    if reason is not None:
        return Skipped(reason, event_type)
    user_id = _bounded_text(doc.get("user_id"), "user_id", MAX_USER_ID, required=False)
    if user_id is None:
        raise RecordRejected("user_id", "missing; the generic format requires a user_id")
    return Event(
        user_id=user_id,
        event_type=event_type,
        timestamp=_timestamp(doc.get("timestamp"), "timestamp"),
        attributes=_attributes(doc.get("attributes"), "attributes"),
        metrics=_metrics(doc.get("metrics"), "metrics"),
        endpoint_id=_bounded_text(doc.get("endpoint_id"), "endpoint_id", MAX_ENDPOINT_ID, required=False),
        event_id=_bounded_text(doc.get("event_id"), "event_id", MAX_ENDPOINT_ID, required=False),
        format=EventFormat.GENERIC,
    )


def detect_format(doc: Mapping[str, Any]) -> EventFormat:
    """Pinpoint records carry ``event_timestamp`` or ``endpoint``/``client``; generic ones ``user_id``."""
    if "user_id" in doc and "endpoint" not in doc and "event_timestamp" not in doc:
        return EventFormat.GENERIC
    return EventFormat.PINPOINT


def parse_event(payload: bytes) -> Event | Skipped:
    doc = decode_json(payload)
    if detect_format(doc) is EventFormat.GENERIC:
        return _parse_generic(doc)
    return _parse_pinpoint(doc)

