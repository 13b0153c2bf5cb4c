"""``pia replay`` on small, hand-computed scenarios: the whole pipeline, in-process on moto.

Every expectation below is worked out by hand from the rule table and the events, in the comments
next to them; none is read back from the engine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pia_cli.main import main
from pia_cli.replay import parse_now, replay

HEADER = (
    "RuleType,EventName,AttributeName,AttributeValue,Operator-C,Target-C,Operator-V,Target-V,"
    "ResetWhenReachTarget,StartDate,FinishDate,MetricName"
)
RULES = [
    # row 2: every 3rd course fires trk_course_completed and starts again from zero
    "aggregator,course_completed,na,na,equal,3,na,999,yes,9999-99-99,9999-99-99,na",
    # row 3: exactly 2 green buttons makes the user ready; later clicks never withdraw it
    "aggregator,greenbutton,na,na,equal,2,na,999,no,9999-99-99,9999-99-99,na",
    # row 4: two purchases of books (the match is exact and case-sensitive)
    "aggregator,purchase,category,books,greater_or_equal,2,na,999,no,9999-99-99,9999-99-99,na",
    # row 5: more than 100 spent from 2026-04-10 to 2026-04-12, both days included
    "date,purchase,na,na,na,999,greater,100,no,2026-04-10,2026-04-12,price",
    # row 6: each 60 seconds of video fires trk_video_watched and resets the sum
    "aggregator,video_watched,na,na,na,999,greater_or_equal,60,yes,9999-99-99,9999-99-99,seconds",
    # row 7: rejected, "bigger" is no operator
    "aggregator,greenbutton,na,na,bigger,2,na,999,no,9999-99-99,9999-99-99,na",
    # row 8: rejected, system events are never counted
    "aggregator,_session.start,na,na,greater,1,na,999,no,9999-99-99,9999-99-99,na",
]
NOW = "2026-04-13T06:00:00Z"


def millis(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def pinpoint(
    event_type: str,
    user: str | None,
    at: str = "2026-04-05T10:00:00Z",
    attributes: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """An event-stream record as Pinpoint writes it; ``user`` None is an endpoint nobody signed in on."""
    endpoint_id = f"ep-{user or 'anonymous'}"
    return {
        "event_type": event_type,
        "event_timestamp": millis(at),
        "arrival_timestamp": millis(at) + 700,
        "event_version": "3.1",
        "application": {"app_id": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", "sdk": {"name": "aws-amplify"}},
        "client": {"client_id": endpoint_id},
        "device": {"platform": {"name": "android", "version": "14"}},
        "session": {"session_id": "s-1", "start_timestamp": millis(at) - 60_000},
        "attributes": attributes or {},
        "metrics": metrics or {},
        "endpoint": {
            "Id": endpoint_id,
            "ChannelType": "GCM",
            "EndpointStatus": "ACTIVE",
            "User": {"UserId": user} if user else {},
        },
        "awsAccountId": "123456789012",
    }


def buy(user: str, category: str, price: float, at: str = "2026-04-05T10:00:00Z") -> dict[str, Any]:
    return pinpoint("purchase", user, at, {"category": category, "currency": "USD"}, {"price": price})


def scenario() -> list[dict[str, Any] | str]:
    """In stream order. Comments give each user's hand-computed outcome."""
    lines: list[dict[str, Any] | str] = []
    # alice: 7 courses -> fires at the 3rd and the 6th (count left at 1): 2 events.
    #        5 green buttons -> count reaches exactly 2 at the 2nd: ready, and stays ready at 3, 4, 5.
    #        books once, games three times -> 1 book: no trk_purchase_books. No purchase in the date window.
    for i in range(7):
        lines.append(
            pinpoint("course_completed", "alice", attributes={"course": f"c{i}"}, metrics={"score": 90})
        )
    lines += [pinpoint("greenbutton", "alice", metrics={"clicks": 1}) for _ in range(5)]
    lines += [buy("alice", "books", 9.99)] + [buy("alice", "games", 20) for _ in range(3)]
    # bob: in-window purchases 30 + 30 = 60 (the 80s sit one second outside each end): not ready.
    #      1 green button: not 2.
    lines += [
        buy("bob", "games", 80, "2026-04-09T23:59:59Z"),
        buy("bob", "games", 30, "2026-04-10T00:00:00Z"),
        buy("bob", "games", 30, "2026-04-12T23:59:59Z"),
        buy("bob", "games", 80, "2026-04-13T00:00:00Z"),
        pinpoint("greenbutton", "bob", metrics={"clicks": 1}),
    ]
    # carol: 60 at the first instant of the first day + 50 at the last second of the last day = 110 > 100.
    lines += [
        buy("carol", "music", 60, "2026-04-10T00:00:00Z"),
        buy("carol", "music", 50, "2026-04-12T23:59:59Z"),
    ]
    # dave: video 30, 30 -> 60 fires and resets; 45, 20 -> 65 fires and resets; 10 left over: 2 events.
    lines += [pinpoint("video_watched", "dave", metrics={"seconds": s}) for s in (30, 30, 45, 20, 10)]
    # erin: two books: ready. frank: two "Books": not books, not ready.
    lines += [buy("erin", "books", 12.5), buy("erin", "books", 7.5)]
    lines += [buy("frank", "Books", 12.5), buy("frank", "Books", 7.5)]
    # skipped: 2 session starts, 1 campaign email, 1 of our own trk_ events, 5 clicks nobody signed in
    # for, and 1 line that is not JSON: 10 records.
    lines += [pinpoint("_session.start", "alice"), pinpoint("_session.start", "bob")]
    lines += [pinpoint("_email.send", "carol"), pinpoint("trk_greenbutton", "alice")]
    lines += [pinpoint("greenbutton", None, metrics={"clicks": 1}) for _ in range(5)]
    lines.append("this line is not JSON")
    return lines


EXPECTED = {
    "user_attributes": {
        "alice": {"trk_greenbutton": "ready"},
        "carol": {"trk_date_purchase": "ready"},
        "erin": {"trk_purchase_books": "ready"},
    },
    "fired_events": [
        {"user_id": "alice", "event_type": "trk_course_completed", "count": 2},
        {"user_id": "dave", "event_type": "trk_video_watched", "count": 2},
    ],
    "skipped_records": 10,
}


def write(
    tmp_path: Path, lines: Sequence[dict[str, Any] | str], rules: list[str] = RULES, header: str = HEADER
) -> tuple[Path, Path]:
    rules_path = tmp_path / "rules.csv"
    rules_path.write_text("\n".join([header, *rules]) + "\n")
    events_path = tmp_path / "events.jsonl"
    events_path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    return rules_path, events_path


def test_replay_counts_resets_equal_targets_filters_and_inclusive_dates(tmp_path: Path) -> None:
    rules, events = write(tmp_path, scenario())

    result = replay(rules, events, parse_now(NOW), batch_size=100)

    assert result["user_attributes"] == EXPECTED["user_attributes"]
    assert result["fired_events"] == EXPECTED["fired_events"]
    assert result["skipped_records"] == EXPECTED["skipped_records"]
    assert [(r["row"], r["column"]) for r in result["rejected_rules"]] == [
        (7, "Operator-C"),
        (8, "EventName"),
    ]
    assert '"bigger" is not an operator' in result["rejected_rules"][0]["message"]


def test_one_record_per_batch_gives_the_same_answer(tmp_path: Path) -> None:
    """Coalescing a batch must equal applying the events one at a time."""
    rules, events = write(tmp_path, scenario())

    result = replay(rules, events, parse_now(NOW), batch_size=1)

    assert {k: result[k] for k in EXPECTED} == EXPECTED


def test_now_is_the_clock_of_rolling_windows(tmp_path: Path) -> None:
    rolling = ["date,level_up,na,na,greater_or_equal,2,na,999,no,9999-99-99,9999-99-99,na,last 2 days"]
    levels = [pinpoint("level_up", "gina", at) for at in ("2026-04-10T08:00:00Z", "2026-04-10T20:00:00Z")]
    rules, events = write(tmp_path, levels, rolling, header=HEADER + ",Window")

    inside = replay(rules, events, parse_now("2026-04-11T12:00:00Z"))
    after = replay(rules, events, parse_now("2026-04-13T06:00:00Z"))

    # On 04-11 the window is 04-10..04-11 and holds both level-ups; on 04-13 it is 04-12..04-13, empty.
    assert inside["user_attributes"] == {"gina": {"trk_date_level_up": "ready"}}
    assert after["user_attributes"] == {}


def test_the_cli_prints_one_json_document_and_keeps_logs_off_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = write(tmp_path, scenario())

    status = main(
        ["replay", "--rules", str(rules), "--events", str(events), "--now", NOW, "--batch-size", "50"]
    )

    captured = capsys.readouterr()
    assert status == 0
    document = json.loads(captured.out)
    assert set(document) == {"user_attributes", "fired_events", "rejected_rules", "skipped_records"}
    assert document["fired_events"] == EXPECTED["fired_events"]
    assert [(r["row"], r["column"]) for r in document["rejected_rules"]] == [
        (7, "Operator-C"),
        (8, "EventName"),
    ]
    assert '"reason":"not JSON' in captured.err and '"sequence_number":"42"' in captured.err


def test_a_table_without_its_columns_is_an_answer_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, events = write(tmp_path, [pinpoint("greenbutton", "alice")])
    rules = tmp_path / "renamed-columns.csv"
    rules.write_text("Rule,Event\naggregator,greenbutton\n")

    status = main(["replay", "--rules", str(rules), "--events", str(events), "--now", NOW])

    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["user_attributes"] == {} and document["fired_events"] == []
    assert document["rejected_rules"][0]["row"] == 1
    assert "column" in document["rejected_rules"][0]["message"]


def test_a_missing_events_file_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules, _ = write(tmp_path, [])

    status = main(["replay", "--rules", str(rules), "--events", str(tmp_path / "absent.jsonl")])

    captured = capsys.readouterr()
    assert status != 0
    assert captured.out == ""
    assert "absent.jsonl" in captured.err
