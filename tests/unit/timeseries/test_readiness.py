"""Readiness lines of the evaluator's report (issue #16, item 5), for the cases a run meets."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from pia.rules.model import Rule
from pia.rules.table import parse_rules
from pia.timeseries.backfill import BackfillTask
from pia.timeseries.readiness import archive_hours, readiness
from pia.timeseries.rollups import BEGINNING, SeriesPlan
from tests.conftest import rule_row

TODAY = date(2026, 3, 12)
STARTS = datetime(2026, 3, 10, tzinfo=UTC)


def rule(row: int, start: str = "2026-03-03") -> Rule:
    cells = ("date", "purchase", "na", "na", "greater", "0", "na", "999", "no", start, "2026-03-31")
    parsed = parse_rules([(row, rule_row(*cells, OutputName=f"trk_date_r{row}"))])
    assert not parsed.errors
    return parsed.rules[0]


def plan(*rules: Rule, starts: datetime = STARTS) -> SeriesPlan:
    return SeriesPlan(rules[0].series, rules, "2026-03-10", starts)


def test_a_series_waiting_for_its_backfill_is_computing_with_the_reason() -> None:
    waiting = plan(rule(3), rule(2, start="2026-03-05"))
    task = BackfillTask(waiting, date(2026, 3, 3), final=True)
    lines = readiness(
        {waiting.series: waiting},
        [task],
        [],
        today=TODAY,
        zone=ZoneInfo("UTC"),
        archive=True,
        waiting_reason="Athena query q-1 still queued after 600 s; the next run reads its results",
    )
    assert [(line.row, line.state, line.progress_percent, line.hours_total) for line in lines] == [
        (2, "computing", 0, 168),
        (3, "computing", 0, 168),
    ], "one series, one backfill: its rules share its progress, listed by row"
    assert lines[0].message.startswith("Athena query q-1 still queued")


def test_a_provisional_backfill_is_ready_and_says_it_is_recomputed() -> None:
    fresh = plan(rule(2))
    task = BackfillTask(fresh, date(2026, 3, 3), final=False)
    (line,) = readiness(
        {fresh.series: fresh}, [task], [fresh.series], today=TODAY, zone=ZoneInfo("UTC"), archive=True
    )
    assert (line.state, line.progress_percent, line.hours_done) == ("ready", 100, 168)
    assert "recomputed" in line.message
    assert line.to_json()["archive_hours_done"] == 168


def test_rules_without_history_or_without_an_archive_say_so() -> None:
    undated = plan(rule(2), starts=BEGINNING)
    dated = plan(rule(3, start="2026-03-04"))
    plans = {undated.series: undated}
    (line,) = readiness(plans, [], [], today=TODAY, zone=ZoneInfo("UTC"), archive=True)
    assert (line.state, line.progress_percent) == ("ready", 100)
    (line,) = readiness({dated.series: dated}, [], [], today=TODAY, zone=ZoneInfo("UTC"), archive=False)
    assert (line.state, line.progress_percent, line.hours_total) == ("no-archive", 0, 144)


def test_archive_hours_count_from_local_midnight_of_the_first_day() -> None:
    assert archive_hours(date(2026, 3, 9), STARTS, ZoneInfo("UTC")) == 24
    assert archive_hours(date(2026, 3, 9), STARTS, ZoneInfo("Asia/Kolkata")) == 30  # midnight is 18:30 UTC
    assert archive_hours(date(2026, 3, 11), STARTS, ZoneInfo("UTC")) == 0
