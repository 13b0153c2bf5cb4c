"""The generic event format: what a producer that left Pinpoint may send, and what is refused, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from pia.core.events import (
    Event,
    EventFormat,
    RecordRejected,
    Skipped,
    SkipReason,
    detect_format,
    parse_event,
)
from pia.counting.aggregator import InboundRecord
from pia.counting.processor import decode_record
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, sequence


def generic(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "user_id": "user-1001",
        "event_type": "purchase",
        "timestamp": "2026-11-02T09:15:00Z",
        "attributes": {"category": "books"},
        "metrics": {"amount": 19.99},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def pinpoint_record(user_id: str | None = "user-2001") -> dict[str, Any]:
    user = {"UserId": user_id} if user_id else {}
    return {
        "event_type": "purchase",
        "event_timestamp": 1793613900000,
        "arrival_timestamp": 1793613900500,
        "application": {"app_id": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", "sdk": {}},
        "client": {"client_id": "ep-2001"},
        "attributes": {"category": "books"},
        "metrics": {"amount": 7.5},
        "endpoint": {"ChannelType": "APNS", "User": user},
        "awsAccountId": "123456789012",
    }


def parse(doc: dict[str, Any]) -> Event | Skipped:
    return parse_event(json.dumps(doc).encode())


def rejected(doc: dict[str, Any]) -> RecordRejected:
    with pytest.raises(RecordRejected) as caught:
        parse(doc)
    return caught.value


def test_a_generic_record_becomes_an_event_with_exact_values() -> None:
    event = parse(generic(event_id="evt-1", attributes={"category": "books", "channel": "web"}))
    assert event == Event(
        user_id="user-1001",
        event_type="purchase",
        timestamp=datetime(2026, 11, 2, 9, 15, tzinfo=UTC),
        attributes={"category": "books", "channel": "web"},
        metrics={"amount": Decimal("19.99")},
        endpoint_id=None,
        event_id="evt-1",
        format=EventFormat.GENERIC,
    )


def test_event_id_and_endpoint_id_are_optional_and_bounded() -> None:
    event = parse(generic())
    assert isinstance(event, Event)
    assert event.event_id is None and event.endpoint_id is None
    with_endpoint = parse(generic(endpoint_id="ep-9"))
    assert isinstance(with_endpoint, Event) and with_endpoint.endpoint_id == "ep-9"
    assert rejected(generic(event_id=42)).field == "event_id"


def test_a_long_event_id_still_identifies_a_resend_and_a_long_endpoint_id_is_left_out() -> None:
    first, resend = parse(generic(event_id="e" * 300)), parse(generic(event_id="e" * 300, user_id="u"))
    other = parse(generic(event_id="e" * 299 + "f"))
    assert isinstance(first, Event) and isinstance(resend, Event) and isinstance(other, Event)
    assert first.event_id == resend.event_id != other.event_id
    assert first.event_id is not None and len(first.event_id) <= 256
    long_endpoint = parse(generic(endpoint_id="p" * 257))
    assert isinstance(long_endpoint, Event) and long_endpoint.endpoint_id is None


def test_what_no_rule_could_match_is_left_out_and_the_event_still_counts() -> None:
    event = parse(
        generic(
            attributes={
                "url": "u" * 201,
                "n" * 51: "v",
                "page": "p" * 200,
                **{f"a{i}": "v" for i in range(60)},
            },
            metrics={"m" * 51: 1, **{f"m{i}": i for i in range(60)}},
        )
    )
    assert isinstance(event, Event)
    assert event.attributes["page"] == "p" * 200
    assert "url" not in event.attributes and "n" * 51 not in event.attributes
    assert len(event.attributes) == 61 and len(event.metrics) == 61, "a rule's MetricName has no length bound"


def test_an_event_type_longer_than_any_rule_name_is_skipped_not_rejected() -> None:
    assert parse(generic(event_type="e" * 51)) == Skipped(SkipReason.UNMATCHABLE, "e" * 51)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-02T09:15:00Z", datetime(2026, 11, 2, 9, 15, tzinfo=UTC)),
        ("2026-11-02T09:15:00.250Z", datetime(2026, 11, 2, 9, 15, 0, 250_000, tzinfo=UTC)),
        ("2026-11-02T11:15:00+02:00", datetime(2026, 11, 2, 9, 15, tzinfo=UTC)),
        ("2026-11-02T09:15:00", datetime(2026, 11, 2, 9, 15, tzinfo=UTC)),
        (1793610900000, datetime(2026, 11, 2, 9, 15, tzinfo=UTC)),
        (1793610900123, datetime(2026, 11, 2, 9, 15, 0, 123_000, tzinfo=UTC)),
        ("1793610900000", datetime(2026, 11, 2, 9, 15, tzinfo=UTC)),
    ],
)
def test_timestamps_in_iso_8601_or_epoch_milliseconds_land_in_utc(timestamp: Any, expected: datetime) -> None:
    event = parse(generic(timestamp=timestamp))
    assert isinstance(event, Event)
    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == timedelta(0)


def test_an_offset_is_applied_so_the_utc_day_is_right_for_date_rules() -> None:
    event = parse(generic(timestamp="2026-11-01T23:30:00-05:00"))
    assert isinstance(event, Event)
    assert (event.timestamp.date().isoformat(), event.timestamp.hour) == ("2026-11-02", 4)


@pytest.mark.parametrize(
    ("timestamp", "fragment"),
    [
        (..., "missing"),
        (None, "missing"),
        ("", "missing"),
        ("yesterday", "not ISO 8601"),
        ("2026-13-01T00:00:00Z", "not ISO 8601"),
        ("02/11/2026 09:15", "not ISO 8601"),
        (1793610900, "epoch time in milliseconds"),
        (-5, "epoch time in milliseconds"),
        (10**20, "epoch time in milliseconds"),
        (True, "not a timestamp"),
        ({"seconds": 1}, "must be an ISO 8601 string or epoch milliseconds"),
    ],
)
def test_a_bad_timestamp_is_rejected_naming_the_field(timestamp: Any, fragment: str) -> None:
    error = rejected(generic(timestamp=timestamp))
    assert error.field == "timestamp"
    assert fragment in error.reason


@pytest.mark.parametrize("user_id", [..., None, "", "   "])
def test_a_missing_user_id_is_rejected_not_skipped(user_id: Any) -> None:
    error = rejected(generic(user_id=user_id))
    assert error.field == "user_id"
    assert "requires a user_id" in error.reason


@pytest.mark.parametrize(
    ("user_id", "fragment"), [(1001, "must be a string, not int"), ("u" * 257, "over the limit of 256")]
)
def test_a_malformed_user_id_is_rejected(user_id: Any, fragment: str) -> None:
    error = rejected(generic(user_id=user_id))
    assert (error.field, fragment in error.reason) == ("user_id", True)


@pytest.mark.parametrize("event_type", ["_session.start", "trk_purchase"])
def test_system_events_and_own_outputs_are_skipped_in_the_generic_format_too(event_type: str) -> None:
    reason = SkipReason.SYSTEM_EVENT if event_type.startswith("_") else SkipReason.OWN_OUTPUT
    assert parse(generic(event_type=event_type, user_id=...)) == Skipped(reason, event_type)


def test_metrics_keep_their_exact_decimal_value_and_null_means_absent() -> None:
    raw = b'{"user_id":"u","event_type":"e","timestamp":1793613900000,'
    raw += b'"metrics":{"amount":0.1,"items":3,"big":12345678901234567890.123456789,"x":null}}'
    event = parse_event(raw)
    assert isinstance(event, Event)
    assert event.metrics == {
        "amount": Decimal("0.1"),
        "items": Decimal(3),
        "big": Decimal("12345678901234567890.123456789"),
    }


@pytest.mark.parametrize(
    ("metrics", "field", "fragment"),
    [
        ({"amount": "12"}, "metrics.amount", "not a number"),
        ({"amount": True}, "metrics.amount", "not a number"),
        ({"amount": [1]}, "metrics.amount", "not a number"),
        ([1, 2], "metrics", "must be an object"),
    ],
)
def test_bad_metrics_are_rejected_naming_the_metric(metrics: Any, field: str, fragment: str) -> None:
    error = rejected(generic(metrics=metrics))
    assert error.field == field
    assert fragment in error.reason


def test_attribute_numbers_and_booleans_read_as_their_json_text_and_null_means_absent() -> None:
    raw = b'{"user_id":"u","event_type":"e","timestamp":1793613900000,'
    raw += b'"attributes":{"level":7,"ratio":1.50,"premium":true,"coupon":null}}'
    event = parse_event(raw)
    assert isinstance(event, Event)
    assert event.attributes == {"level": "7", "ratio": "1.50", "premium": "true"}


@pytest.mark.parametrize(
    ("attributes", "field", "fragment"),
    [
        ({"plan": {"tier": 1}}, "attributes.plan", "must be a string, finite number or boolean"),
        ({"plan": ["a"]}, "attributes.plan", "must be a string, finite number or boolean"),
        ("books", "attributes", "must be an object"),
    ],
)
def test_bad_attributes_are_rejected_naming_the_attribute(attributes: Any, field: str, fragment: str) -> None:
    error = rejected(generic(attributes=attributes))
    assert error.field == field
    assert fragment in error.reason


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (generic(), EventFormat.GENERIC),
        (generic(user_id=...), EventFormat.GENERIC),
        (generic(client="web", endpoint="home"), EventFormat.GENERIC),
        (pinpoint_record(), EventFormat.PINPOINT),
        (pinpoint_record(user_id=None), EventFormat.PINPOINT),
        ({"event_type": "purchase", "endpoint": {"User": {"UserId": "u"}}}, EventFormat.PINPOINT),
        ({"event_type": "purchase"}, EventFormat.GENERIC),
    ],
)
def test_format_is_detected_from_the_record_itself(doc: dict[str, Any], expected: EventFormat) -> None:
    assert detect_format(doc) is expected


def test_a_pinpoint_record_without_a_timestamp_names_the_pinpoint_field() -> None:
    error = rejected({"event_type": "purchase", "endpoint": {"User": {"UserId": "u"}}})
    assert error.field == "event_timestamp"


def test_a_mixed_batch_is_decoded_per_record_and_bad_records_do_not_affect_neighbours() -> None:
    payloads = [
        record_data(pinpoint_record()),
        record_data(generic(timestamp=1793613900000)),
        record_data(generic(user_id=...)),
        record_data(pinpoint_record(user_id=None)),
        record_data(generic(user_id="user-1002", timestamp="not a time")),
        b"{truncated",
        record_data(generic(user_id="user-1003", metrics={"amount": 5})),
    ]
    event = kinesis_event([StreamRecord(data, sequence(i + 1)) for i, data in enumerate(payloads)])
    decoded = [decode_record(KinesisStreamRecord(raw)) for raw in event["Records"]]

    accepted = [d for d in decoded if isinstance(d, InboundRecord)]
    assert [(d.event.format, d.event.user_id, d.position.sequence) for d in accepted] == [
        (EventFormat.PINPOINT, "user-2001", int(sequence(1))),
        (EventFormat.GENERIC, "user-1001", int(sequence(2))),
        (EventFormat.GENERIC, "user-1003", int(sequence(7))),
    ]
    assert accepted[0].event.endpoint_id == "ep-2001"
    assert accepted[0].event.timestamp == accepted[1].event.timestamp
    assert isinstance(decoded[2], RecordRejected)
    assert (decoded[2].field, decoded[2].reason) == (
        "user_id",
        "missing; the generic format requires a user_id",
    )
    assert decoded[3] == Skipped(SkipReason.NO_USER, "purchase")
    assert isinstance(decoded[4], RecordRejected) and decoded[4].field == "timestamp"
    assert isinstance(decoded[5], RecordRejected) and decoded[5].field == "data"


def test_a_lowercase_utc_designator_is_accepted_as_the_schema_allows() -> None:
    event = parse(generic(timestamp="2026-11-02 09:15:00z"))
    assert isinstance(event, Event) and event.timestamp == datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
