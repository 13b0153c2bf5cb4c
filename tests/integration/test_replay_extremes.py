"""``pia replay`` on the largest and strangest inputs: each bad line is an answer, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pia_cli.main import main

HEADER = (
    "RuleType,EventName,AttributeName,AttributeValue,Operator-C,Target-C,Operator-V,Target-V,"
    "ResetWhenReachTarget,StartDate,FinishDate,MetricName"
)
# Two clicks make a user ready.
RULE = "aggregator,click,na,na,greater_or_equal,2,na,999,no,9999-99-99,9999-99-99,na"
NOW = "2026-11-30T06:00:00Z"


def click(user: str, **changes: Any) -> str:
    doc = {"user_id": user, "event_type": "click", "timestamp": "2026-11-30T05:00:00Z", **changes}
    return json.dumps(doc)


def run(tmp_path: Path, lines: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    rules = tmp_path / "rules.csv"
    rules.write_text(f"{HEADER}\n{RULE}\n")
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    status = main(["replay", "--rules", str(rules), "--events", str(events), "--now", NOW])
    captured = capsys.readouterr()
    return status, json.loads(captured.out) if captured.out else None, captured.err


def test_a_line_over_the_kinesis_record_limit_is_rejected_and_its_neighbours_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = click("bob", attributes={"note": "x" * (1024 * 1024 + 1)})
    deep = "[" * 100_000
    lines = [click("alice"), huge, click("alice"), deep, click("bob")]
    status, document, err = run(tmp_path, lines, capsys)

    assert status == 0, err
    assert document["user_attributes"] == {"alice": {"trk_click": "ready"}}
    assert document["skipped_records"] == 2
    assert "line 2 rejected: data:" in err and "1 MiB" in err
    assert "line 4 rejected: data: JSON nested too deeply" in err


def test_a_null_event_time_with_an_arrival_time_is_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = {
        "event_type": "click",
        "event_timestamp": None,
        "arrival_timestamp": 1796014800000,
        "client": {"client_id": "ep-carol"},
        "endpoint": {"User": {"UserId": "carol"}},
    }
    status, document, err = run(tmp_path, [json.dumps(record)] * 2, capsys)

    assert status == 0, err
    assert document["user_attributes"] == {"carol": {"trk_click": "ready"}}
    assert document["skipped_records"] == 0
