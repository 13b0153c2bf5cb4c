"""`pia replay` reads Pinpoint and generic events from the same file, and counts a user across both."""

from __future__ import annotations

import json
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
