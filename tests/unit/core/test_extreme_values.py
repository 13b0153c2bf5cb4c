"""The largest, smallest and strangest values a record can carry: each is either accepted and then
processable all the way down, or rejected naming its field. Nothing in between (issue #15)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pia.core.events import Event, RecordRejected, Skipped, parse_event
from pia.core.limits import MAX_EVENT_TIME, MIN_EVENT_TIME
from tests.unit.core.test_events import pinpoint

DIGITS = "7" * 5_000
"""More digits than Python's int-string conversion limit (4,300) allows."""


def generic(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"user_id": "user-1", "event_type": "purchase", "timestamp": "2026-11-02T09:15:00Z"}
    doc.update(overrides)
    return doc


def raw(doc: dict[str, Any], **literals: str) -> bytes:
    """The document as JSON, with ``"@name"`` placeholders replaced by raw JSON text (numbers
    ``json.dumps`` cannot write, such as ``1e999999999``)."""
    text = json.dumps(doc)
    for name, literal in literals.items():
        text = text.replace(f'"@{name}"', literal)
    return text.encode()


REJECTED: list[tuple[str, bytes, str]] = [
    ("Pinpoint timestamp of 5,000 digits", raw(pinpoint(event_timestamp=DIGITS)), "event_timestamp"),
    ("generic timestamp of 5,000 digits", raw(generic(timestamp=DIGITS)), "timestamp"),
    ("timestamp number of 5,000 digits", raw(generic(timestamp="@t"), t=DIGITS), "timestamp"),
    ("metric 1e999999999", raw(pinpoint(metrics={"amount": "@m"}), m="1e999999999"), "metrics.amount"),
    ("metric -1e999999999", raw(generic(metrics={"amount": "@m"}), m="-1e999999999"), "metrics.amount"),
    ("metric of 5,000 digits", raw(generic(metrics={"amount": "@m"}), m=DIGITS), "metrics.amount"),
    ("the end of year 9999", raw(generic(timestamp="9999-12-31T23:59:59.999999Z")), "timestamp"),
    ("the end of year 9999 in epoch ms", raw(pinpoint(event_timestamp=253402300799999)), "event_timestamp"),
    ("year 1", raw(generic(timestamp="0001-01-01T00:00:00Z")), "timestamp"),
    ("1970, before any plausible event", raw(generic(timestamp="1970-01-01T00:00:00Z")), "timestamp"),
    ("epoch ms 1e999999999", raw(generic(timestamp="@t"), t="1e999999999"), "timestamp"),
    ("epoch ms -1e999999999", raw(generic(timestamp="@t"), t="-1e999999999"), "timestamp"),
]


@pytest.mark.parametrize(("case", "payload", "field"), REJECTED, ids=[c[0] for c in REJECTED])
def test_an_extreme_value_is_rejected_naming_its_field(case: str, payload: bytes, field: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        parse_event(payload)
    assert caught.value.field == field, case
    assert caught.value.reason


ACCEPTED: list[tuple[str, bytes]] = [
    ("the first accepted instant", raw(generic(timestamp=MIN_EVENT_TIME.isoformat()))),
    ("just before the bound", raw(generic(timestamp="8999-12-31T23:59:59.999999+00:00"))),
    ("just before the bound, far east", raw(generic(timestamp="9000-01-01T13:59:59+14:00"))),
    ("tiny metric", raw(generic(metrics={"amount": "@m"}), m="1e-999999999")),
    ("largest double", raw(generic(metrics={"amount": "@m"}), m="1.7976931348623157e308")),
    ("metric of 4,000 digits", raw(generic(metrics={"amount": "@m"}), m="0." + "3" * 4_000)),
    ("huge attribute number", raw(generic(attributes={"n": "@a"}), a="1e999999999")),
    ("attribute of 5,000 digits, left out", raw(generic(attributes={"n": "@a"}), a=DIGITS)),
]


@pytest.mark.parametrize(("case", "payload"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_an_extreme_but_meaningful_value_is_accepted(case: str, payload: bytes) -> None:
    assert isinstance(parse_event(payload), Event), case


def test_the_accepted_range_is_the_same_for_iso_8601_and_epoch_milliseconds() -> None:
    first_ms = int(MIN_EVENT_TIME.timestamp() * 1000)
    end_ms = int(MAX_EVENT_TIME.timestamp() * 1000)
    for timestamp in (first_ms, str(first_ms), MIN_EVENT_TIME.isoformat(), end_ms - 1):
        event = parse_event(raw(generic(timestamp=timestamp)))
        assert isinstance(event, Event) and MIN_EVENT_TIME <= event.timestamp < MAX_EVENT_TIME
    for timestamp in (first_ms - 1, end_ms, str(end_ms), MAX_EVENT_TIME.isoformat()):
        with pytest.raises(RecordRejected, match="timestamp"):
            parse_event(raw(generic(timestamp=timestamp)))


def test_a_null_event_timestamp_falls_back_to_the_arrival_timestamp() -> None:
    event = parse_event(raw(pinpoint(event_timestamp=None)))
    assert isinstance(event, Event)
    assert event.timestamp == datetime(2026, 11, 20, 9, 0, 1, tzinfo=UTC)


def test_a_record_with_neither_timestamp_names_event_timestamp() -> None:
    with pytest.raises(RecordRejected) as caught:
        parse_event(raw(pinpoint(event_timestamp=None, arrival_timestamp=None)))
    assert caught.value.field == "event_timestamp"


def test_a_bad_arrival_timestamp_used_as_the_fallback_is_named() -> None:
    doc = pinpoint(arrival_timestamp="soon")
    del doc["event_timestamp"]
    with pytest.raises(RecordRejected) as caught:
        parse_event(raw(doc))
    assert caught.value.field == "arrival_timestamp"


def test_an_attribute_number_too_long_for_int_is_left_out_like_any_over_long_value() -> None:
    event = parse_event(raw(generic(attributes={"n": "@a", "plan": "pro"}), a=DIGITS))
    assert isinstance(event, Event) and event.attributes == {"plan": "pro"}


def test_a_tiny_metric_keeps_its_exact_value() -> None:
    event = parse_event(raw(generic(metrics={"amount": "@m"}), m="1e-999999999"))
    assert isinstance(event, Event) and event.metrics == {"amount": Decimal("1e-999999999")}


def test_skipped_records_are_not_affected_by_their_extreme_fields() -> None:
    assert isinstance(
        parse_event(raw(pinpoint(event_type="_session.start", event_timestamp=DIGITS))), Skipped
    )


RAW_NUMBER = re.compile(r'"@@([^"@]*)@@"')
NUMBER_TEXT = st.one_of(
    st.from_regex(r"\A-?(0|[1-9]\d{0,20})(\.\d{1,20})?([eE][+-]?\d{1,10})?\Z"),
    st.integers(4_000, 6_000).map(lambda n: "9" * n),
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    NUMBER_TEXT,
    NUMBER_TEXT.map(lambda number: f"@@{number}@@"),
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?([Zz]|[+-]\d{2}:?\d{2})?\Z"),
)
"""Every kind of JSON scalar; ``@@number@@`` strings become raw JSON numbers, which ``json.dumps``
could not write (``1e9999999999``, 6,000 digits)."""
VALUES = st.one_of(
    LEAVES, st.lists(LEAVES, max_size=2), st.dictionaries(st.text(max_size=5), LEAVES, max_size=3)
)
CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": VALUES,
        "event_timestamp": VALUES,
        "arrival_timestamp": VALUES,
        "attributes": VALUES,
        "metrics": VALUES,
        "user_id": VALUES,
        "event_id": VALUES,
    },
)


@settings(max_examples=500, deadline=None)
@given(
    doc=st.sampled_from([pinpoint(), generic()]),
    changes=CHANGES,
)
def test_any_value_in_any_field_is_accepted_or_rejected_naming_a_field(
    doc: dict[str, Any], changes: dict[str, Any]
) -> None:
    payload = RAW_NUMBER.sub(r"\1", json.dumps({**doc, **changes}))
    try:
        parse_event(payload.encode())
    except RecordRejected as rejection:
        assert rejection.field and rejection.reason
