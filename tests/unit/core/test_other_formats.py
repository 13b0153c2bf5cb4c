"""Segment/RudderStack ``track`` events and mapped JSON: read per record, skipped or rejected like
Pinpoint's, with the producer's own field names in every rejection."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pia.core.events import (
    Event,
    EventFormat,
    RecordRejected,
    Skipped,
    SkipReason,
    detect_format,
    parse_event,
)
from pia.core.mapping import FieldMapping
from pia.settings import AggregatorSettings, SettingsError

MAPPING = FieldMapping(
    user_id="detail.user",
    event_type="detail.name",
    timestamp="time",
    attributes="detail.tags",
    metrics="detail.numbers",
    event_id="id",
)

TABLES = {"AGGREGATES_TABLE": "agg", "RULESET_TABLE": "rules"}


def track(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "userId": "user-1",
        "anonymousId": "anon-1",
        "messageId": "msg-1",
        "timestamp": "2026-11-02T09:15:00.000Z",
        "properties": {"category": "books", "revenue": 19.99, "gift": True, "items": [1], "shipping": None},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def mapped(**detail: Any) -> dict[str, Any]:
    return {"id": "ev-1", "time": 1793610900000, "detail": {"user": "user-1", "name": "purchase", **detail}}


def parse(doc: dict[str, Any], mapping: FieldMapping | None = None) -> Event | Skipped:
    return parse_event(json.dumps(doc).encode(), mapping)


def rejected(doc: dict[str, Any], mapping: FieldMapping | None = None) -> RecordRejected:
    with pytest.raises(RecordRejected) as caught:
        parse(doc, mapping)
    return caught.value


def test_a_track_event_maps_user_event_time_id_and_splits_properties() -> None:
    event = parse(track())
    assert event == Event(
        user_id="user-1",
        event_type="Order Completed",
        timestamp=datetime(2026, 11, 2, 9, 15, tzinfo=UTC),
        attributes={"category": "books", "gift": "true"},
        metrics={"revenue": Decimal("19.99")},
        event_id="msg-1",
        format=EventFormat.SEGMENT,
    )


def test_rudderstack_events_are_read_the_same_way() -> None:
    doc = track(rudderId="r-1", channel="web", originalTimestamp="2026-11-02T09:14:59Z", timestamp=...)
    event = parse(doc)
    assert isinstance(event, Event) and event.format is EventFormat.SEGMENT
    assert event.timestamp == datetime(2026, 11, 2, 9, 14, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (track(userId=...), Skipped(SkipReason.NO_USER, "Order Completed")),
        (track(userId=None), Skipped(SkipReason.NO_USER, "Order Completed")),
        (track(type="identify"), Skipped(SkipReason.NOT_TRACK, "identify")),
        (track(type="page"), Skipped(SkipReason.NOT_TRACK, "page")),
        (track(event="trk_purchase"), Skipped(SkipReason.OWN_OUTPUT, "trk_purchase")),
    ],
)
def test_anonymous_events_and_other_calls_are_skipped(doc: dict[str, Any], expected: Skipped) -> None:
    assert parse(doc) == expected


def test_a_numeric_user_id_is_the_same_user_as_its_text() -> None:
    event = parse(track(userId=1001))
    assert isinstance(event, Event) and event.user_id == "1001"


@pytest.mark.parametrize(
    ("doc", "field", "fragment"),
    [
        (track(event=...), "event", "missing"),
        (track(event=7), "event", "must be a string"),
        (track(timestamp="soon"), "timestamp", "ISO 8601"),
        (track(properties=["a"]), "properties", "must be an object"),
        (track(messageId=12), "messageId", "must be a string"),
        (track(userId=["u"]), "userId", "must be a string"),
    ],
)
def test_bad_track_events_are_rejected_naming_the_segment_field(
    doc: dict[str, Any], field: str, fragment: str
) -> None:
    error = rejected(doc)
    assert (error.field, fragment in error.reason) == (field, True), error


def test_a_mapped_record_is_read_through_the_declared_expressions() -> None:
    event = parse(mapped(tags={"plan": "gold", "n": 3}, numbers={"amount": 5}), MAPPING)
    assert event == Event(
        user_id="user-1",
        event_type="purchase",
        timestamp=datetime(2026, 11, 2, 9, 15, tzinfo=UTC),
        attributes={"plan": "gold", "n": "3"},
        metrics={"amount": Decimal(5)},
        event_id="ev-1",
        format=EventFormat.MAPPED,
    )


def test_powertools_functions_read_a_payload_wrapped_as_a_json_string() -> None:
    mapping = FieldMapping(
        user_id="powertools_json(body).uid",
        event_type="powertools_json(body).name",
        timestamp="powertools_json(body).ts",
    )
    doc = {"body": json.dumps({"uid": "u-9", "name": "purchase", "ts": "2026-11-02T09:15:00Z"})}
    event = parse(doc, mapping)
    assert isinstance(event, Event) and (event.user_id, event.format) == ("u-9", EventFormat.MAPPED)


@pytest.mark.parametrize(
    ("doc", "field", "fragment"),
    [
        (mapped(name=None), "detail.name", "missing"),
        ({**mapped(), "time": "later"}, "time", "ISO 8601"),
        (mapped(numbers={"amount": "five"}), "detail.numbers.amount", "not a number"),
        (mapped(tags="gold"), "detail.tags", "must be an object"),
    ],
)
def test_bad_mapped_records_are_rejected_naming_the_expression(
    doc: dict[str, Any], field: str, fragment: str
) -> None:
    error = rejected(doc, MAPPING)
    assert (error.field, fragment in error.reason) == (field, True), error


def test_a_mapped_record_without_a_user_is_skipped_like_an_anonymous_pinpoint_event() -> None:
    assert parse(mapped(user=None), MAPPING) == Skipped(SkipReason.NO_USER, "purchase")


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"event_type": "e", "event_timestamp": 1793610900000}, EventFormat.PINPOINT),
        (track(), EventFormat.SEGMENT),
        ({"user_id": "u", "event_type": "e", "timestamp": 1}, EventFormat.GENERIC),
        (mapped(), EventFormat.MAPPED),
        ({"user_id": "u", "kind": "e"}, EventFormat.MAPPED),
        ({"type": "track", "note": "no identity keys"}, EventFormat.MAPPED),
    ],
)
def test_with_a_mapping_the_format_is_still_decided_per_record(
    doc: dict[str, Any], expected: EventFormat
) -> None:
    assert detect_format(doc, MAPPING) is expected


def test_without_a_mapping_unknown_json_is_still_generic() -> None:
    assert detect_format(mapped()) is EventFormat.GENERIC


@pytest.mark.parametrize(
    ("environment", "fragment"),
    [
        ({"MAPPING_USER_ID": "a.b"}, "needs MappingEventType, MappingTimestamp"),
        (
            {"MAPPING_USER_ID": "a[", "MAPPING_EVENT_TYPE": "b", "MAPPING_TIMESTAMP": "c"},
            "MappingUserId: 'a['",
        ),
        (
            {
                "MAPPING_USER_ID": "a",
                "MAPPING_EVENT_TYPE": "b",
                "MAPPING_TIMESTAMP": "c",
                "MAPPING_METRICS": "x..y",
            },
            "MappingMetrics",
        ),
    ],
)
def test_a_bad_mapping_fails_at_cold_start_naming_the_parameter(
    environment: dict[str, str], fragment: str
) -> None:
    with pytest.raises(SettingsError, match=fragment.replace("[", r"\[")):
        AggregatorSettings.from_env({**TABLES, **environment})


def test_no_mapping_is_declared_by_default() -> None:
    assert AggregatorSettings.from_env(TABLES).field_mapping is None


SEGMENT_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "schemas" / "segment-track-event.schema.json").read_text()
)


@pytest.mark.parametrize("doc", SEGMENT_SCHEMA["examples"])
def test_the_segment_schema_examples_are_read_as_segment_events(doc: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(SEGMENT_SCHEMA)
    assert list(Draft202012Validator(SEGMENT_SCHEMA).iter_errors(doc)) == []
    event = parse(doc)
    assert isinstance(event, Event) and event.format is EventFormat.SEGMENT
    assert (event.user_id, event.event_type, event.metrics) == (
        "user-1001",
        "purchase",
        {"amount": Decimal("19.99")},
    )
