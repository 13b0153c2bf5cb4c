"""Inbound events: Amazon Pinpoint's event-stream records, the small generic schema, Segment's and
RudderStack's ``track`` events, or any JSON through the stack's declared field mapping.

The generic schema (``schemas/generic-event.schema.json``) is for apps that write to Kinesis
directly after leaving Pinpoint; Segment and RudderStack deliver to Kinesis as they are; the mapping
(:mod:`pia.core.mapping`) reads anything else. The format is decided per record, so one stream can
carry several while producers migrate, and every format's fields are checked by the same code.

A record is parsed into an :class:`Event`, marked :class:`Skipped` (a valid event this engine does
not count), or rejected with :class:`RecordRejected` naming the field at fault. Rejection is per
record: its neighbours in the batch are unaffected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pia.core.fields import FieldNames, Fields
from pia.core.limits import (
    MAX_ATTRIBUTE_NAME,
    MAX_ATTRIBUTE_VALUE,
    MAX_DOUBLE,
    MAX_ENDPOINT_ID,
    MAX_EPOCH_MILLIS,
    MAX_EVENT_ID,
    MAX_EVENT_TIME,
    MAX_EVENT_TYPE,
    MAX_RECORD_BYTES,
    MAX_USER_ID,
    MIN_EPOCH_MILLIS,
    MIN_EVENT_TIME,
)
from pia.core.mapping import FieldMapping
from pia.core.segment import is_segment, segment_fields
from pia.rules.aggregates import chosen_metric
from pia.rules.model import OUTPUT_PREFIX

PINPOINT_TIMESTAMPS = ("event_timestamp", "arrival_timestamp")
GENERIC_FIELDS = ("user_id", "timestamp")


class EventFormat(StrEnum):
    PINPOINT = "pinpoint"
    GENERIC = "generic"
    SEGMENT = "segment"
    """Segment's and RudderStack's ``track`` spec (RudderStack follows Segment's)."""
    MAPPED = "mapped"
    """Any other JSON, read through the stack's declared JMESPath field mapping."""


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
        return chosen_metric(self.metrics, metric_name)


class SkipReason(StrEnum):
    SYSTEM_EVENT = "system_event"
    OWN_OUTPUT = "own_output"
    NO_USER = "no_user"
    NOT_TRACK = "not_track"
    """A Segment/RudderStack call that is not an event (identify, page, screen, group, alias)."""
    UNMATCHABLE = "unmatchable"
    """An event type longer than any rule's EventName may be: valid, but no rule can count it."""


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


def _json_integer(text: str) -> int | Decimal:
    """Python refuses to turn more than 4,300 digits into an ``int`` (a guard against quadratic
    time). Such a JSON integer is read as a ``Decimal``, so the field it sits in is judged, and
    rejected by name, instead of the whole record failing as "not JSON"."""
    try:
        return int(text)
    except ValueError:
        return Decimal(text)


_JSON = json.JSONDecoder(parse_float=Decimal, parse_int=_json_integer, parse_constant=Decimal)
"""Built once: ``json.loads`` with hooks builds a new decoder per call, a third of a record's decode."""


def decode_json(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordRejected("data", f"{len(payload)} bytes is over the {MAX_RECORD_BYTES}-byte record limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordRejected("data", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        document = _JSON.decode(text)
    except ValueError as exc:
        raise RecordRejected("data", f"not JSON ({exc})") from None
    except RecursionError:
        raise RecordRejected("data", "JSON nested too deeply to be an event") from None
    if not isinstance(document, dict):
        raise RecordRejected("data", "not a JSON object")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(document):
        raise RecordRejected("data", "an unpaired \\ud800-\\udfff escape: not Unicode text, cannot be stored")
    return document


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(document: object) -> bool:
    """JSON can escape half a UTF-16 pair, which Python decodes to a string no UTF-8 encoder (the
    store's key hashing, DynamoDB) accepts: the record could never be committed, only retried."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RecordRejected("data", "not base64") from None


def bounded_text(value: object, field: str, limit: int, *, required: bool = True) -> str | None:
    """A string field of at most ``limit`` characters (Pinpoint counts characters); ``None`` when
    absent or empty and not ``required``."""
    if value is None or value == "":
        if required:
            raise RecordRejected(field, "missing")
        return None
    if not isinstance(value, str):
        raise RecordRejected(field, f"must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise RecordRejected(field, f"{len(value)} characters is over the limit of {limit}")
    return value


def _attribute_text(value: object, field: str) -> str:
    """Strings as sent; JSON numbers and booleans as their JSON text, so ``3`` matches a rule's ``3``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, Decimal) and value.is_finite()):
        return str(value)
    raise RecordRejected(field, f"must be a string, finite number or boolean, not {str(value)[:40]!r}")


def parse_attributes(raw: object, field: str) -> dict[str, str]:
    """A ``null`` value is an absent attribute: producers often serialise unset optionals that way.

    A name or value longer than a rule's AttributeName or AttributeValue may be is left out: no rule
    could match it, and the rest of the event still counts (a 150-character page URL is valid in
    Pinpoint, whose event attribute values go up to 200).
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecordRejected(field, "must be an object of string values")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if value is None or len(name) > MAX_ATTRIBUTE_NAME:
            continue
        text = _attribute_text(value, f"{field}.{name}")
        if len(text) <= MAX_ATTRIBUTE_VALUE:
            out[name] = text
    return out


def parse_metric(value: object, field: str) -> Decimal:
    """One metric, exactly as written: any finite number a double can hold.

    The bound is tested on ``copy_abs``, which never rounds: ``abs`` would round ``1e999999999`` to
    the context and raise ``decimal.Overflow`` instead of rejecting it. Tiny magnitudes (``1e-400``)
    are kept exactly; they are harmless to sum.
    """
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise RecordRejected(field, f"{str(value)[:40]!r} is not a number")
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or number.copy_abs() > MAX_DOUBLE:
        raise RecordRejected(field, f"{str(value)[:40]} is not a finite double")
    return number


def parse_metrics(raw: object, field: str) -> dict[str, Decimal]:
    """An object of metrics (see :func:`parse_metric`); ``null`` means absent."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecordRejected(field, "must be an object of numbers")
    out: dict[str, Decimal] = {}
    for name, value in raw.items():
        # A long name is kept: MetricName has no length bound, and a rule without one sums the
        # event's only metric, whatever its name.
        if value is not None:
            out[name] = parse_metric(value, f"{field}.{name}")
    return out


def parse_timestamp(raw: object, field: str) -> datetime:
    """ISO 8601 (no offset means UTC) or epoch milliseconds, as a number or a string of digits, in UTC
    and between :data:`MIN_EVENT_TIME` and :data:`MAX_EVENT_TIME`, whatever the form.

    Digits are read as a ``Decimal``, never an ``int``: Python refuses to convert more than 4,300
    digits to an ``int``, and that error would escape the rejection path.
    """
    if type(raw) is int and MIN_EPOCH_MILLIS <= raw < MAX_EPOCH_MILLIS:
        # Pinpoint's own case, on every record: integer milliseconds, exact as a float here.
        return datetime.fromtimestamp(raw / 1000, tz=UTC)
    if isinstance(raw, bool):
        raise RecordRejected(field, "not a timestamp")
    if isinstance(raw, int | Decimal):
        return _from_epoch_millis(Decimal(raw), field)
    if isinstance(raw, str) and raw.strip():
        text = raw.strip()
        if text.isascii() and text.isdigit():
            return _from_epoch_millis(Decimal(text), field)
        return _from_iso_8601(text, field)
    if raw is None or isinstance(raw, str):
        raise RecordRejected(field, "missing")
    raise RecordRejected(field, f"must be an ISO 8601 string or epoch milliseconds, not {type(raw).__name__}")


def _from_epoch_millis(millis: Decimal, field: str) -> datetime:
    if millis.is_finite() and MIN_EPOCH_MILLIS <= millis < MAX_EPOCH_MILLIS:
        return datetime.fromtimestamp(float(millis) / 1000, tz=UTC)
    shown = str(millis) if len(str(millis)) <= 40 else f"a {len(str(millis))}-character number"
    if millis.is_finite() and millis >= MAX_EPOCH_MILLIS:
        raise RecordRejected(
            field, f"{shown} is not an epoch time in milliseconds before {MAX_EVENT_TIME:%Y-%m-%d}"
        )
    raise RecordRejected(
        field,
        f"{shown} is not an epoch time in milliseconds (expected {MIN_EPOCH_MILLIS} or more; "
        "epoch seconds are refused)",
    )


def _from_iso_8601(text: str, field: str) -> datetime:
    outside = RecordRejected(
        field,
        f"{text[:40]!r} is outside the accepted range, "
        f"{MIN_EVENT_TIME:%Y-%m-%dT%H:%M:%SZ} to {MAX_EVENT_TIME:%Y-%m-%d}",
    )
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
        moment = (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise RecordRejected(field, f"{text[:40]!r} is not ISO 8601 or epoch milliseconds") from None
    except OverflowError:
        raise outside from None
    if not MIN_EVENT_TIME <= moment < MAX_EVENT_TIME:
        raise outside
    return moment


def _skip_reason(event_type: str) -> SkipReason | None:
    if len(event_type) > MAX_EVENT_TYPE:
        return SkipReason.UNMATCHABLE
    if event_type.startswith("_"):
        return SkipReason.SYSTEM_EVENT
    if event_type.startswith(OUTPUT_PREFIX):
        return SkipReason.OWN_OUTPUT
    return None


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _optional_id(value: object, name: str, limit: int, *, digest_if_long: bool) -> str | None:
    """An endpoint id longer than a target accepts is left out (the event still counts for its
    user); an event id of any length still identifies a resend, so a long one is kept as its digest."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordRejected(name, f"must be a string, not {type(value).__name__}")
    if len(value) <= limit:
        return value
    if digest_if_long:
        return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return None


def _event_from(fields: Fields, event_format: EventFormat, *, user_required: bool = False) -> Event | Skipped:
    """One check for every format; ``user_required`` rejects a record with no user instead of
    skipping it, for the generic format, whose schema makes ``user_id`` mandatory."""
    names = fields.names
    event_type = bounded_text(fields.event_type, names.event_type, MAX_RECORD_BYTES)
    assert event_type is not None
    reason = _skip_reason(event_type)
    if reason is not None:
        return Skipped(reason, event_type)
    user_id = bounded_text(fields.user_id, names.user_id, MAX_USER_ID, required=False)
    if user_id is None or not user_id.strip():
        if user_required:
            requirement = f"missing; the {event_format.value} format requires a {names.user_id}"
            raise RecordRejected(names.user_id, requirement)
        return Skipped(SkipReason.NO_USER, event_type)
    return Event(
        user_id=user_id,
        event_type=event_type,
        timestamp=parse_timestamp(fields.timestamp, names.timestamp),
        attributes=parse_attributes(fields.attributes, names.attributes),
        metrics=parse_metrics(fields.metrics, names.metrics),
        endpoint_id=_optional_id(
            fields.endpoint_id, names.endpoint_id, MAX_ENDPOINT_ID, digest_if_long=False
        ),
        event_id=_optional_id(fields.event_id, names.event_id, MAX_EVENT_ID, digest_if_long=True),
        format=event_format,
    )


PINPOINT_NAMES = FieldNames(
    "event_type",
    "endpoint.User.UserId",
    "event_timestamp",
    "attributes",
    "metrics",
    "event_id",
    "endpoint.Id",
)
PINPOINT_CLIENT_NAMES = PINPOINT_NAMES._replace(endpoint_id="client.client_id")
GENERIC_NAMES = FieldNames(
    "event_type", "user_id", "timestamp", "attributes", "metrics", "event_id", "endpoint_id"
)


def _pinpoint_fields(doc: Mapping[str, Any]) -> Fields:
    endpoint = _object(doc.get("endpoint"))
    endpoint_id = endpoint.get("Id")
    names = PINPOINT_NAMES
    if endpoint_id is None or endpoint_id == "":
        endpoint_id, names = _object(doc.get("client")).get("client_id"), PINPOINT_CLIENT_NAMES
    timestamp = doc.get("event_timestamp")
    if (timestamp is None or timestamp == "") and doc.get("arrival_timestamp") not in (None, ""):
        # A producer that serialises an unset event time as null still has Pinpoint's arrival time.
        timestamp, names = doc["arrival_timestamp"], names._replace(timestamp="arrival_timestamp")
    return Fields(
        names,
        doc.get("event_type"),
        _object(endpoint.get("User")).get("UserId"),
        timestamp,
        doc.get("attributes"),
        doc.get("metrics"),
        doc.get("event_id"),
        endpoint_id,
    )


def _generic_fields(doc: Mapping[str, Any]) -> Fields:
    get = doc.get
    return Fields(
        GENERIC_NAMES,
        get("event_type"),
        get("user_id"),
        get("timestamp"),
        get("attributes"),
        get("metrics"),
        get("event_id"),
        get("endpoint_id"),
    )


def detect_format(doc: Mapping[str, Any], mapping: FieldMapping | None = None) -> EventFormat:
    """Decided per record, so one stream can carry several formats while producers migrate.

    Pinpoint always writes ``event_timestamp`` and ``arrival_timestamp``; Segment and RudderStack
    always write ``type`` and a ``messageId`` or user key; the generic format carries
    ``user_id``/``timestamp``. With a declared mapping, a record that is none of these is read
    through it; a record with the generic keys but no ``event_type`` is too, since the generic
    schema requires one.

    Without a mapping, a record with none of these keys but a Pinpoint ``endpoint`` object is a
    Pinpoint record missing its timestamp; anything else is generic, so a record with no user is
    rejected for its missing ``user_id`` rather than skipped as a Pinpoint event without a UserId.
    """
    if any(key in doc for key in PINPOINT_TIMESTAMPS):
        return EventFormat.PINPOINT
    if is_segment(doc):
        return EventFormat.SEGMENT
    generic = any(key in doc for key in GENERIC_FIELDS)
    if mapping is not None and not (generic and "event_type" in doc):
        return EventFormat.MAPPED
    if generic:
        return EventFormat.GENERIC
    if isinstance(doc.get("endpoint"), dict):
        return EventFormat.PINPOINT
    return EventFormat.GENERIC


def parse_event(payload: bytes, mapping: FieldMapping | None = None) -> Event | Skipped:
    doc = decode_json(payload)
    event_format = detect_format(doc, mapping)
    if event_format is EventFormat.PINPOINT:
        return _event_from(_pinpoint_fields(doc), event_format)
    if event_format is EventFormat.SEGMENT:
        fields = segment_fields(doc)
        if fields is None:
            return Skipped(SkipReason.NOT_TRACK, str(doc.get("type")))
        return _event_from(fields, event_format)
    if event_format is EventFormat.MAPPED:
        assert mapping is not None
        return _event_from(mapping.fields(doc), event_format)
    return _event_from(_generic_fields(doc), event_format, user_required=True)
