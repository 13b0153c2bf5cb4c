"""A small ``make demo``: the real template on moto's server, the whole pipeline, then a clean stop."""

from __future__ import annotations

import io
import json
import os
import re
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pia.rules.aggregates import average_text, mean
from pia_cli.demo import render_summary, run_demo

pytestmark = pytest.mark.demo


def signed_in(document: dict[str, object]) -> str | None:
    endpoint = document.get("endpoint")
    user = endpoint.get("User", {}) if isinstance(endpoint, dict) else {}
    return user.get("UserId") if isinstance(user, dict) else None


def test_the_demo_runs_the_pipeline_and_leaves_nothing_running(tmp_path: Path) -> None:
    out = io.StringIO()

    result = run_demo(out, users=40, days=4, output_dir=tmp_path)

    progress = out.getvalue()
    endpoint = re.search(r"moto server on (http://127\.0\.0\.1:\d+)", progress)
    assert endpoint is not None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoint.group(1)}/moto-api/data.json", timeout=2)
    assert "AWS_ENDPOINT_URL" not in os.environ
    # The sample's date rules take the large-backfill path: Athena's query, run by DuckDB locally.
    assert "backfill path: athena-sql-on-duckdb (3 series)" in progress
    # The evaluator's run goes through its state machine, fanned out over units of the demo's bound.
    path = re.search(r"evaluator path: step-functions \((\d+) units, (\d+) follow-ups, 0 failed", progress)
    assert path is not None and int(path.group(1)) > 1, progress

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert result.events_put == len(events)
    greens: Counter[str] = Counter()
    courses: Counter[str] = Counter()
    last_purchase: dict[str, str] = {}
    daily: dict[str, list[str]] = {}
    big_games: Counter[str] = Counter()
    for event in events:
        user = signed_in(event)
        if user is not None and event["event_type"] == "greenbutton":
            greens[user] += 1
        if (
            user is not None
            and event["event_type"] == "purchase"
            and event["attributes"]["category"] in ("games", "apps")
            and Decimal(str(event["metrics"]["price"])) > 50
        ):
            big_games[user] += 1
        if user is not None and event["event_type"] == "purchase":
            day = datetime.fromtimestamp(event["event_timestamp"] / 1000, UTC).date().isoformat()
            last_purchase[user] = max(day, last_purchase.get(user, day))
        if user is not None and event["event_type"] == "course_completed":
            courses[user] += 1
            if courses[user] % 3 == 0:
                day = datetime.fromtimestamp(int(event["event_timestamp"]) / 1000, UTC).date().isoformat()
                if day not in daily.setdefault(user, []):
                    daily[user].append(day)
    by_output = {rule.output_name: rule for rule in result.rules}
    # Sample rule rows 2 and 3: more than 5 green buttons; every 3rd completed course fires and resets.
    assert by_output["trk_greenbutton"].users == sum(1 for n in greens.values() if n > 5)
    assert by_output["trk_course_completed"].users == sum(1 for n in courses.values() if n >= 3)
    assert by_output["trk_course_completed"].fired == sum(n // 3 for n in courses.values())
    # Row 10: no purchase in the last 3 days (28..30 April), for users who bought before.
    quiet = sum(1 for day in last_purchase.values() if day <= "2026-04-27")
    assert quiet > 0 and by_output["trk_absent_purchase"].users == quiet
    # Row 9 is row 3 with "Cap: 1 per day": of each user's crossings, the first of each UTC day fires.
    assert by_output["trk_course_daily"].fired == sum(len(days) for days in daily.values())
    assert by_output["trk_course_daily"].fired < by_output["trk_course_completed"].fired
    assert by_output["trk_course_daily"].description.endswith("reset, cap 1 per day")
    # Row 12's Filter: at least two purchases of games or apps above 50.
    assert by_output["trk_big_game_buyer"].users == sum(1 for n in big_games.values() if n >= 2) > 0
    assert '[category in ("apps", "games") and price > 50]' in by_output["trk_big_game_buyer"].description
    assert len(result.rules) == 10
    # Sample rule row 11: each user's average purchase price, written as the value, the latest one.
    prices: dict[str, list[Decimal]] = {}
    for event in events:
        user = signed_in(event)
        if user is not None and event["event_type"] == "purchase":
            prices.setdefault(user, []).append(Decimal(str(event["metrics"]["price"])))
    expected = {u: average_text(mean(sum(p, Decimal(0)), len(p)) or Decimal(0)) for u, p in prices.items()}
    written = {u: a["trk_avg_price"] for u, a in result.attributes.items() if "trk_avg_price" in a}
    assert written == expected
    assert by_output["trk_avg_price"].users == len(expected) and by_output["trk_avg_price"].writes_value
    assert result.rejected == [result.rejected[0]] and result.rejected[0].startswith("row 8, Operator-C")
    assert result.failures == []
    assert result.mapping["records"] == len(events) and result.mapping["discarded"] == 0
    aggregator = next(calls for caller, calls in result.calls.items() if caller.endswith("-aggregator"))
    assert aggregator["dynamodb"] > 0 and aggregator["pinpoint"] > 0

    summary = io.StringIO()
    render_summary(result, summary)
    text = summary.getvalue()
    for heading in (
        "== Rules ==",
        "== Example users ==",
        "== trk_ events fired ==",
        "== On-failure queue ==",
    ):
        assert heading in text
    assert "== AWS calls ==" in text and "trk_date_purchase" in text
    assert "users with a value" in text and "purchase: avg(price) written as the value" in text


@pytest.mark.parametrize("target", ["eventbridge", "customer-profiles"])
def test_the_demo_deploys_with_each_target_and_shows_what_it_received(tmp_path: Path, target: str) -> None:
    pinpoint_only = run_demo(io.StringIO(), users=30, days=3, output_dir=tmp_path / "pinpoint")
    result = run_demo(io.StringIO(), targets=(target,), users=30, days=3, output_dir=tmp_path / target)

    assert result.failures == []
    assert any(kind.startswith(f"{target} ") for kind in result.received), result.received
    assert not any(kind.startswith("pinpoint ") for kind in result.received)
    same = {r.output_name: r.users for r in pinpoint_only.rules}
    assert {r.output_name: r.users for r in result.rules} == same, "every target sees the same rules met"
    aggregator = next(calls for caller, calls in result.calls.items() if caller.endswith("-aggregator"))
    service = "events" if target == "eventbridge" else target
    assert aggregator[service] > 0 and "pinpoint" not in aggregator
