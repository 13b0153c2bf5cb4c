"""Pinpoint event-stream records: what counts, what is skipped, and what is rejected with which field."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pia.core.events import Event, RecordRejected, Skipped, SkipReason, decode_base64, parse_event


def pinpoint(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_type": "purchase",
        "event_timestamp": 1795165200123,
        "arrival_timestamp": 1795165201000,
        "client": {"client_id": "ep-1"},
        "attributes": {"category": "shoes"},
        "metrics": {"amount": 129.99},
        "endpoint": {"ChannelType": "GCM", "User": {"UserId": "user-1"}},
    }
    doc.update(overrides)
    return doc


def parse(doc: Any) -> Event | Skipped:
    return parse_event(json.dumps(doc).encode())


def test_custom_event_is_parsed_with_exact_metric_and_event_time() -> None:
    event = parse(pinpoint())
    assert isinstance(event, Event)
    assert event.user_id == "user-1"
    assert event.endpoint_id == "ep-1"
    assert event.metrics == {"amount": Decimal("129.99")}
    assert event.timestamp == datetime(2026, 11, 20, 9, 0, 0, 123000, tzinfo=UTC)


def test_endpoint_id_prefers_the_endpoint_object() -> None:
    event = parse(pinpoint(endpoint={"Id": "ep-from-endpoint", "User": {"UserId": "u"}}))
    assert isinstance(event, Event) and event.endpoint_id == "ep-from-endpoint"


@pytest.mark.parametrize(
    ("event_type", "user", "reason"),
    [
        ("_session.start", "u", SkipReason.SYSTEM_EVENT),
        ("_email.send", "u", SkipReason.SYSTEM_EVENT),
        ("trk_greenbutton", "u", SkipReason.OWN_OUTPUT),
        ("greenbutton", None, SkipReason.NO_USER),
    ],
)
def test_non_custom_events_and_users_without_id_are_skipped(
    event_type: str, user: str | None, reason: SkipReason
) -> None:
    endpoint = {"User": {"UserId": user}} if user else {"User": {}}
    result = parse(pinpoint(event_type=event_type, endpoint=endpoint))
    assert result == Skipped(reason, event_type)


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        (b"\xff\xfe not utf8", "data", "UTF-8"),
        (b"{not json", "data", "not JSON"),
        (b"[1, 2]", "data", "not a JSON object"),
        (json.dumps(pinpoint(metrics={"amount": "lots"})).encode(), "metrics.amount", "not a number"),
        (
            b'{"event_type":"purchase","event_timestamp":1795165200000,"metrics":{"amount":NaN},"endpoint":{"User":{"UserId":"u"}}}',
            "metrics.amount",
            "finite",
        ),
        (
            b'{"event_type":"purchase","event_timestamp":1795165200000,"metrics":{"amount":1e999},"endpoint":{"User":{"UserId":"u"}}}',
            "metrics.amount",
            "finite",
        ),
        (
            json.dumps(pinpoint(endpoint={"User": {"UserId": "u" * 300}})).encode(),
            "endpoint.User.UserId",
            "limit",
        ),
        (b"{" + b'"pad":"' + b"x" * (1024 * 1024) + b'"}', "data", "record limit"),
        (json.dumps(pinpoint(event_timestamp="yesterday")).encode(), "event_timestamp", "ISO 8601"),
        (json.dumps(pinpoint(event_type=None)).encode(), "event_type", "missing"),
    ],
)
def test_bad_records_are_rejected_naming_the_field(payload: bytes, field: str, fragment: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        parse_event(payload)
    assert caught.value.field == field
    assert fragment in caught.value.reason


def test_not_base64_is_rejected() -> None:
    with pytest.raises(RecordRejected, match="not base64"):
        decode_base64("%%% not base64 %%%")
    assert decode_base64(base64.b64encode(b"ok").decode()) == b"ok"


def test_metric_for_picks_the_named_or_only_metric() -> None:
    one = parse(pinpoint(metrics={"amount": 5}))
    two = parse(pinpoint(metrics={"amount": 5, "items": 2}))
    assert isinstance(one, Event) and isinstance(two, Event)
    assert one.metric_for(None) == 5
    assert two.metric_for(None) is None
    assert two.metric_for("items") == 2
    assert two.metric_for("absent") is None


def test_a_pinpoint_event_attribute_up_to_pinpoints_200_character_limit_is_read() -> None:
    url = "https://example.com/" + "p" * 130
    event = parse(pinpoint(attributes={"page": url}))
    assert isinstance(event, Event) and event.attributes["page"] == url


def test_an_attribute_value_no_rule_could_match_is_ignored_and_the_event_still_counts() -> None:
    event = parse(pinpoint(attributes={"note": "x" * 10_000, "plan": "gold"}))
    assert isinstance(event, Event) and event.attributes == {"plan": "gold"}
