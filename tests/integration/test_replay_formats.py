"""`pia replay` reads Pinpoint and generic events from the same file, and counts a user across both."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pia_cli.main import main

RULES = """\
RuleType,EventName,AttributeName,AttributeValue,Operator-C,Target-C,Operator-V,Target-V,ResetWhenReachTarget,StartDate,FinishDate
aggregator,purchase,na,999,greater_or_equal,2,na,999,no,9999-99-99,9999-99-99
aggregator,course_completed,na,999,equal,2,na,999,yes,9999-99-99,9999-99-99
"""


def pinpoint(user: str | None, event_type: str, millis: int) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_timestamp": millis,
        "arrival_timestamp": millis + 500,
        "client": {"client_id": f"ep-{user}"},
        "endpoint": {"Id": f"ep-{user}", "User": {"UserId": user} if user else {}},
    }


EVENTS: list[dict[str, Any]] = [
    {"user_id": "alice", "event_type": "purchase", "timestamp": "2026-11-02T09:00:00Z"},
    pinpoint("alice", "purchase", 1793610000000),
    {"user_id": "bob", "event_type": "purchase", "timestamp": 1793610900000},
    {"user_id": "bob", "event_type": "course_completed", "timestamp": "2026-11-02T10:00:00Z"},
    pinpoint("bob", "course_completed", 1793613700000),
    {"user_id": "bob", "event_type": "course_completed", "timestamp": "2026-11-02T10:20:00+00:00"},
    {"user_id": "bob", "event_type": "course_completed", "timestamp": "1793614800000"},
    {"event_type": "purchase", "timestamp": "2026-11-02T11:00:00Z"},
    {"user_id": "carol", "event_type": "purchase", "timestamp": "yesterday"},
    pinpoint(None, "purchase", 1793610000000),
    {"user_id": "carol", "event_type": "_session.start", "timestamp": "2026-11-02T11:00:00Z"},
]


def test_replay_counts_both_formats_per_user_and_skips_bad_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.csv"
    rules.write_text(RULES)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))

    status = main(["replay", "--rules", str(rules), "--events", str(events), "--now", "2026-11-05T00:00:00Z"])

    assert status == 0
    assert json.loads(capsys.readouterr().out) == {
        # alice: one generic and one Pinpoint purchase reach ">= 2".
        "user_attributes": {"alice": {"trk_purchase": "ready"}},
        # bob: four course_completed in both formats cross "= 2" twice; one purchase is not enough.
        "fired_events": [{"user_id": "bob", "event_type": "trk_course_completed", "count": 2}],
        "rejected_rules": [],
        # no user_id, a bad timestamp, a Pinpoint event without UserId, a system event.
        "skipped_records": 4,
    }


SAME_RULES = """\
RuleType,EventName,AttributeName,AttributeValue,Operator-C,Target-C,Operator-V,Target-V,ResetWhenReachTarget,StartDate,FinishDate,MetricName,OutputName
aggregator,purchase,category,books,na,999,greater,20,no,9999-99-99,9999-99-99,amount,trk_book_buyer
aggregator,course_completed,na,999,equal,2,na,999,yes,9999-99-99,9999-99-99,na,trk_course_pair
aggregator,page_view,page,{page},greater_or_equal,2,na,999,no,9999-99-99,9999-99-99,na,trk_long_page
"""
PAGE = "https://shop.example.com/catalogue/books/" + "b" * 109
START = 1793610000000

# (user or None, event type, seconds after START, string properties, numeric properties)
STORY: list[tuple[str | None, str, int, dict[str, str], dict[str, float]]] = [
    ("alice", "purchase", 0, {"category": "books"}, {"amount": 12.5}),
    ("alice", "purchase", 60, {"category": "music"}, {"amount": 30}),
    ("alice", "purchase", 120, {"category": "books"}, {"amount": 9.5}),
    ("bob", "course_completed", 0, {}, {}),
    ("bob", "course_completed", 60, {}, {}),
    ("bob", "course_completed", 120, {}, {}),
    ("bob", "course_completed", 180, {}, {}),
    ("carol", "page_view", 0, {"page": PAGE}, {}),
    ("carol", "page_view", 60, {"page": PAGE}, {}),
    (None, "purchase", 0, {"category": "books"}, {"amount": 99}),
]


def as_pinpoint(
    n: int, user: str | None, kind: str, at: int, strings: dict[str, str], numbers: dict[str, float]
) -> dict[str, Any]:
    return {
        **pinpoint(user, kind, START + at * 1000),
        "attributes": strings,
        "metrics": numbers,
        "event_id": f"e{n}",
    }


def as_segment(
    n: int, user: str | None, kind: str, at: int, strings: dict[str, str], numbers: dict[str, float]
) -> dict[str, Any]:
    moment = datetime.fromtimestamp(START / 1000 + at, UTC).isoformat().replace("+00:00", "Z")
    identity = {"userId": user} if user else {"anonymousId": "anon-7"}
    return {
        "type": "track",
        "event": kind,
        **identity,
        "timestamp": moment,
        "messageId": f"e{n}",
        "properties": {**strings, **numbers, "tags": ["ignored"], "cart": {"ignored": True}},
    }


def as_rudderstack(
    n: int, user: str | None, kind: str, at: int, strings: dict[str, str], numbers: dict[str, float]
) -> dict[str, Any]:
    return {
        **as_segment(n, user, kind, at, strings, numbers),
        "rudderId": f"r{n}",
        "channel": "web",
        "context": {"library": {"name": "rudder-js"}},
    }


def as_in_house(
    n: int, user: str | None, kind: str, at: int, strings: dict[str, str], numbers: dict[str, float]
) -> dict[str, Any]:
    return {
        "id": f"e{n}",
        "data": {
            "who": {"uid": user},
            "name": kind,
            "at": START + at * 1000,
            "labels": strings,
            "values": numbers,
        },
    }


IN_HOUSE_MAPPING = [
    "user_id=data.who.uid",
    "event_type=data.name",
    "timestamp=data.at",
    "attributes=data.labels",
    "metrics=data.values",
    "event_id=id",
]


def replay_story(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: Any, *extra: str
) -> dict[str, Any]:
    rules = tmp_path / "rules.csv"
    rules.write_text(SAME_RULES.format(page=PAGE))
    events = tmp_path / f"{shape.__name__}.jsonl"
    events.write_text("".join(json.dumps(shape(n, *story)) + "\n" for n, story in enumerate(STORY)))
    status = main(
        ["replay", "--rules", str(rules), "--events", str(events), "--now", "2026-11-05T00:00:00Z", *extra]
    )
    assert status == 0
    answer: dict[str, Any] = json.loads(capsys.readouterr().out)
    return answer


def test_segment_rudderstack_and_mapped_json_give_the_same_results_as_pinpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = replay_story(tmp_path, capsys, as_pinpoint)
    assert expected == {
        # alice: books for 12.50 + 9.50 > 20 (the music purchase is filtered out).
        # carol: two views of a 150-character URL, within Pinpoint's 200-character event attribute limit.
        "user_attributes": {"alice": {"trk_book_buyer": "ready"}, "carol": {"trk_long_page": "ready"}},
        "fired_events": [{"user_id": "bob", "event_type": "trk_course_pair", "count": 2}],
        "rejected_rules": [],
        "skipped_records": 1,
    }

    assert replay_story(tmp_path, capsys, as_segment) == expected
    assert replay_story(tmp_path, capsys, as_rudderstack) == expected
    mapping = [arg for pair in IN_HOUSE_MAPPING for arg in ("--map", pair)]
    assert replay_story(tmp_path, capsys, as_in_house, *mapping) == expected


def test_a_bad_mapping_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = tmp_path / "rules.csv", tmp_path / "events.jsonl"
    rules.write_text(RULES)
    events.write_text("{}\n")

    status = main(
        [
            "replay",
            "--rules",
            str(rules),
            "--events",
            str(events),
            "--map",
            "user_id=data.[",
            "--map",
            "event_type=a",
            "--map",
            "timestamp=b",
        ]
    )

    assert status == 2
    assert "MappingUserId: 'data.[' is not a JMESPath expression" in capsys.readouterr().err
