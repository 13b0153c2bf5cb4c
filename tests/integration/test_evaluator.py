"""The scheduled evaluator on moto: backfill, windows, only-changes output, crash safety, read bounds."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from pia.core.events import Event
from pia.counting.aggregator import InboundRecord
from pia.counting.counters import Position
from pia.rules.model import Rule
from pia.targets.factory import build_targets
from pia.timeseries.evaluator import Evaluator
from pia.timeseries.rollups import DayTotal, SeriesRollup, load_zone
from pia.timeseries.store import CoverageTable, RollupStore, SeenValuesTable, rollup_item
from tests.conftest import RULESET_TABLE, TIMESERIES_TABLE
from tests.integration.timeseries_support import date_row, doc, publish

MARCH = [datetime(2026, 3, d, 12, tzinfo=UTC) for d in range(1, 32)]


def test_sample_schedule_event_drives_the_handler(timeseries_stack: Any) -> None:
    summary = timeseries_stack.evaluate()
    assert (summary["series"], summary["actions_sent"], summary["failures"]) == (0, 0, 0)


def test_a_new_rule_is_backfilled_from_the_archive_and_then_counted_live(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.clock.now = datetime(2026, 3, 10, 9, tzinfo=UTC)
    history = [doc("amy", MARCH[d]) for d in (0, 4, 8)] + [doc("ben", MARCH[d]) for d in (1, 2)]
    history.append(doc("amy", MARCH[2], event="refund"))
    stack.aggregate(history, start=1)
    stack.aggregate(history[:2], start=1)  # a redelivery: archived twice, counted once

    published = datetime(2026, 3, 10, 10, tzinfo=UTC)
    (rule,) = stack.publish(
        [date_row("greater_or_equal", "3")], activation="2026-03-11", published_at=published
    ).rules
    summary = stack.evaluate(published + timedelta(hours=1))
    assert summary["backfilled"] == [rule.series] and summary["ready"] == 1
    assert stack.attributes() == {"amy": {"trk_date_purchase": "ready"}}
    assert CoverageTable(stack.dynamodb, TIMESERIES_TABLE).all()[rule.series].final is False

    stack.aggregate([doc("ben", published + timedelta(minutes=90))], start=100)
    summary = stack.evaluate(published + timedelta(hours=2))
    assert (summary["ready"], summary["backfill_events"]) == (1, 7)
    assert stack.attributes()["ben"] == {"trk_date_purchase": "ready"}

    summary = stack.evaluate(datetime(2026, 3, 11, 1, 5, tzinfo=UTC))
    assert (summary["backfilled"], summary["actions_sent"]) == ([rule.series], 0)
    assert CoverageTable(stack.dynamodb, TIMESERIES_TABLE).all()[rule.series].final is True

    stack.clock.now = datetime(2026, 3, 11, 8, tzinfo=UTC)
    stack.aggregate(
        [doc("cat", stack.clock.now), doc("cat", stack.clock.now), doc("amy", stack.clock.now)], start=200
    )
    summary = stack.evaluate()
    assert (summary["backfilled"], summary["actions_sent"]) == ([], 0)
    amy = stack.rollups().load(rule.series, "amy")
    assert amy.window_total(rule.start_date, rule.finish_date) == DayTotal(4, Decimal(0))
    assert (sum(t.count for t in amy.backfill.values()), sum(t.count for t in amy.days.values())) == (3, 1)
    assert sum(stack.calls.sent.values()) == 2


def test_a_rolling_window_lets_a_quiet_user_go(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.clock.now = MARCH[9]
    rows = [date_row("greater_or_equal", "3", start="9999-99-99", finish="9999-99-99", Window="last 7 days")]
    stack.publish(rows, activation="2026-03-01")
    stack.aggregate([doc("rio", MARCH[d]) for d in (7, 8, 9)], start=1)
    assert stack.attributes() == {"rio": {"trk_date_purchase": "ready"}}
    assert stack.evaluate()["actions_sent"] == 0
    assert stack.evaluate(MARCH[13])["actions_sent"] == 0
    summary = stack.evaluate(MARCH[14])
    assert (summary["not_ready"], stack.attributes()) == (1, {"rio": {"trk_date_purchase": "not-ready"}})
    assert stack.evaluate(MARCH[15])["actions_sent"] == 0


def test_a_fixed_window_is_final_once_it_has_ended(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.clock.now = MARCH[30]
    stack.publish([date_row("smaller", "2")], activation="2026-02-01")
    stack.aggregate([doc("sol", MARCH[5])], start=1)
    assert stack.attributes() == {"sol": {"trk_date_purchase": "ready"}}
    stack.clock.now = datetime(2026, 4, 2, tzinfo=UTC)
    stack.restart()
    stack.aggregate([doc("sol", MARCH[6]), doc("new", MARCH[6])], start=2)
    summary = stack.evaluate()
    assert (summary["rules"], summary["actions_sent"]) == (1, 0), "one final evaluation, nothing changed"
    assert stack.attributes() == {"sol": {"trk_date_purchase": "ready"}}
    assert stack.evaluate()["rules"] == 0, "a finalized window is never read again"


@pytest.mark.parametrize("path", ["real-time", "backfill"])
def test_the_real_time_path_and_the_evaluator_agree(timeseries_stack: Any, path: str) -> None:
    """The same events and rules give the same attributes whether the aggregator marks users as the
    events arrive or the evaluator finds them later from the archive; and after the real-time path,
    the evaluator has nothing left to change."""
    stack = timeseries_stack
    rows = [
        date_row("greater", "2", OutputName="trk_busy"),
        date_row("na", "999", "greater_or_equal", "10.5", MetricName="amount", OutputName="trk_big"),
        date_row("equal", "2", attribute=("plan", "pro"), OutputName="trk_pro_pair"),
        date_row(
            "smaller",
            "3",
            start="9999-99-99",
            finish="9999-99-99",
            Window="last 5 days",
            OutputName="trk_recent_few",
        ),
    ]
    rng_days = [(u, d, Decimal(u * 7 + d) / 4) for u in range(12) for d in range(u % 5, 20, 3 + u % 4)]
    docs = [
        doc(
            f"u{u}",
            MARCH[d] + timedelta(minutes=u),
            metrics={"amount": float(a)},
            attributes={"plan": "pro" if d % 2 else "free"},
        )
        for u, d, a in rng_days
    ]
    now = datetime(2026, 3, 21, 18, tzinfo=UTC)
    if path == "real-time":
        stack.clock.now = now
        stack.publish(rows, activation="2026-02-25")
        for start in range(0, len(docs), 7):
            stack.aggregate(docs[start : start + 7], start=start + 1)
        assert stack.calls.sent, "the aggregator marked users as their events arrived"
    else:
        stack.clock.now = datetime(2026, 3, 21, 12, tzinfo=UTC)
        stack.aggregate(docs, start=1)
        stack.publish(rows, activation="2026-03-22", published_at=stack.clock.now)
        assert not stack.calls.sent
        assert stack.evaluate(now)["backfilled"]
    assert stack.evaluate(now + timedelta(minutes=30))["actions_sent"] == 0
    ready = {
        user: {name: value for name, value in values.items() if value == "ready"}
        for user, values in stack.attributes().items()
    }
    expected = expected_attributes(rows_rules(stack), docs, now.date())
    assert {user: values for user, values in ready.items() if values} == expected
    assert len(expected) >= 8 and {n for v in expected.values() for n in v} == {r["OutputName"] for r in rows}


def rows_rules(stack: Any) -> tuple[Rule, ...]:
    from pia.rules.ruleset import RulesetTable

    return RulesetTable(stack.dynamodb, RULESET_TABLE).current().rules


def expected_attributes(
    rules: tuple[Rule, ...], docs: list[dict[str, Any]], today: date
) -> dict[str, dict[str, str]]:
    """A plain reference: each rule over the events in its window on ``today``, user by user."""
    result: dict[str, dict[str, str]] = {}
    for rule in rules:
        first, last = rule.window_for(today) or (today, today)
        per_user: dict[str, tuple[int, Decimal]] = {}
        for d in docs:
            day = datetime.fromtimestamp(d["event_timestamp"] / 1000, UTC).date()
            if rule.attribute_name and d["attributes"].get(rule.attribute_name) != rule.attribute_value:
                continue
            if first <= day <= last:
                user = d["endpoint"]["User"]["UserId"]
                count, total = per_user.get(user, (0, Decimal(0)))
                per_user[user] = (count + 1, total + Decimal(str(d["metrics"]["amount"])))
        for user, (count, total) in per_user.items():
            if rule.is_met(count, total):
                result.setdefault(user, {})[rule.output_name] = "ready"
    return result


def _seed_rollups(dynamodb: Any, rule: Rule, users: int, days: int, buckets: int, endpoints: int = 1) -> None:
    """Rollups as the aggregator leaves them, written straight to the table: every other user has
    20 events a day, the rest 1."""
    requests = []
    for u in range(users):
        per_day = DayTotal(20 if u % 2 == 0 else 1, Decimal("123.4567"))
        state = SeriesRollup(
            series=rule.series,
            user_id=f"user-{u:05d}",
            version=1,
            activation="2026-01-01",
            days={date(2026, 3, 31) - timedelta(days=d): per_day for d in range(days)},
            backfill_activation="2026-01-01",
            endpoints=tuple(f"endpoint-{u:05d}-{e:02d}-{'x' * 140}" for e in range(endpoints)),
        )
        requests.append({"PutRequest": {"Item": rollup_item(state, 1_772_000_000, 400, buckets)}})
    for n in range(0, len(requests), 25):
        dynamodb.batch_write_item(RequestItems={TIMESERIES_TABLE: requests[n : n + 25]})


def _evaluator(stack: Any, buckets: int = 16) -> Evaluator:
    from pia.rules.ruleset import RulesetTable
    from pia.settings import TargetSettings

    dynamodb = stack.calls("dynamodb")
    return Evaluator(
        RulesetTable(dynamodb, RULESET_TABLE).current,
        RollupStore(dynamodb, TIMESERIES_TABLE, buckets=buckets),
        CoverageTable(dynamodb, TIMESERIES_TABLE),
        build_targets(TargetSettings.from_env(), stack.calls),
        zone=load_zone("UTC"),
        retention_days=400,
    )


def test_a_window_of_more_than_one_megabyte_is_read_page_by_page(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    (rule,) = publish(stack.dynamodb, [date_row("greater", "100")], "2026-01-01", MARCH[0]).rules
    _seed_rollups(stack.dynamodb, rule, users=450, days=31, buckets=1, endpoints=15)
    report = _evaluator(stack, buckets=1).run(MARCH[30])
    assert stack.calls.query_pages >= 2 and report.rollups_read == 450
    assert (report.ready, report.actions_sent) == (225, 225)
    assert stack.calls.count("pinpoint", "UpdateEndpointsBatch") == 34
    assert {user for user, _, _ in stack.calls.sent} == {f"user-{u:05d}" for u in range(0, 450, 2)}


def test_a_crash_halfway_then_a_rerun_sends_each_change_once(timeseries_stack: Any) -> None:
    """One partition, so one unit: the crash falls before that unit sends anything."""
    stack = timeseries_stack
    (rule,) = publish(stack.dynamodb, [date_row("greater", "100")], "2026-01-01", MARCH[0]).rules
    _seed_rollups(stack.dynamodb, rule, users=300, days=6, buckets=1)
    evaluator = _evaluator(stack, buckets=1)
    client = evaluator._rollups.client  # type: ignore[attr-defined]
    real = client.batch_execute_statement
    calls = Counter[str]()

    def crash_after_fifty(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the evaluator's container died after 50 writes (two batches of 25)")
        return real(**kwargs)

    client.batch_execute_statement = crash_after_fifty
    with pytest.raises(RuntimeError):
        evaluator.run(MARCH[10])
    client.batch_execute_statement = real
    assert stack.calls.count("pinpoint") == 0

    # The next run comes an hour later on its schedule; anything after the hand-over will do.
    report = _evaluator(stack, buckets=1).run(MARCH[10] + timedelta(minutes=10))
    assert (report.recovered, report.ready) == (50, 100)
    assert set(stack.calls.sent.values()) == {1} and len(stack.calls.sent) == 150
    stack.calls.reset()
    later = MARCH[10] + timedelta(minutes=20)
    assert _evaluator(stack, buckets=1).run(later).actions_sent == 0 and stack.calls.count("pinpoint") == 0


def test_a_crash_in_the_middle_of_the_units_then_a_rerun_sends_each_change_once(
    timeseries_stack: Any,
) -> None:
    """16 partitions, so 16 units: the crash falls after some units have sent and before others ran."""
    stack = timeseries_stack
    (rule,) = publish(stack.dynamodb, [date_row("greater", "100")], "2026-01-01", MARCH[0]).rules
    _seed_rollups(stack.dynamodb, rule, users=300, days=6, buckets=16)
    evaluator = _evaluator(stack)
    client = evaluator._rollups.client  # type: ignore[attr-defined]
    real = client.batch_execute_statement
    calls = Counter[str]()

    def crash_midway(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 9:
            raise RuntimeError("the evaluator's container died")
        return real(**kwargs)

    client.batch_execute_statement = crash_midway
    with pytest.raises(RuntimeError):
        evaluator.run(MARCH[10])
    client.batch_execute_statement = real
    assert 0 < len(stack.calls.sent) < 150

    _evaluator(stack).run(MARCH[10] + timedelta(minutes=10))
    assert set(stack.calls.sent.values()) == {1} and len(stack.calls.sent) == 150
    stack.calls.reset()
    rerun = _evaluator(stack).run(MARCH[10] + timedelta(minutes=20))
    assert (rerun.actions_sent, rerun.rollups_read) == (0, 0) and stack.calls.count("pinpoint") == 0


def test_one_evaluation_reads_one_item_per_user_however_many_events(timeseries_stack: Any) -> None:
    """50 users x 30 days x 20 events a day, through the aggregator: at most 1,500 items read."""
    stack = timeseries_stack
    stack.clock.now = MARCH[0]
    (rule,) = stack.publish(
        [date_row("greater", "500", start="2026-03-01", finish="2026-03-30")], activation="2026-02-20"
    ).rules
    aggregator = stack.aggregator.container.runtime().aggregator
    sequence = 0
    for day in range(30):
        stack.clock.now = MARCH[day]
        records = []
        for n in range(20):
            for u in range(50):
                sequence += 1
                moment = MARCH[day] + timedelta(seconds=n * 50 + u)
                event = Event(f"user-{u:02d}", "purchase", moment, {}, {"amount": Decimal(1)}, f"ep-{u}")
                records.append(InboundRecord(Position("shardId-000000000000", sequence), event))
        assert not aggregator.process(records).failed
    stack.calls.reset()
    summary = stack.evaluate(datetime(2026, 3, 31, 6, tzinfo=UTC))
    assert stack.calls.items_read <= 1_500
    assert summary["rollups_read"] == 50 and summary["actions_sent"] == 0
    events_in_window = sum(
        stack.rollups()
        .load(rule.series, f"user-{u:02d}")
        .window_total(rule.start_date, rule.finish_date)
        .count
        for u in range(50)
    )
    assert events_in_window == 30_000 and set(stack.attributes()) == {f"user-{u:02d}" for u in range(50)}


def test_seen_values_summarize_the_archive_for_the_rule_poller(timeseries_stack: Any) -> None:
    from pia.rules.poller import near_miss_warnings
    from pia.rules.table import parse_rules
    from tests.conftest import CASE_GREENBUTTON, rule_row

    stack = timeseries_stack
    stack.clock.now = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
    stack.aggregate(
        [
            doc("amy", stack.clock.now, "greenbutton", attributes={"color": "green"}),
            doc("ben", stack.clock.now, "greenbutton", attributes={"color": "blue"}),
        ],
        start=1,
    )
    assert stack.evaluate(datetime(2026, 3, 10, 10, 0, tzinfo=UTC))["seen_hours"] == 24
    seen = SeenValuesTable(stack.dynamodb, TIMESERIES_TABLE, cache_seconds=0)
    assert seen.event_names(date(2026, 3, 1)) == set()
    assert stack.evaluate(datetime(2026, 3, 10, 10, 15, tzinfo=UTC))["seen_hours"] == 1
    assert seen.event_names(date(2026, 3, 1)) == {"greenbutton"}
    assert seen.attribute_values("greenbutton", "color", date(2026, 3, 1)) == {"green", "blue"}
    rows = [rule_row(*CASE_GREENBUTTON[:1], "GreenButton", *CASE_GREENBUTTON[2:])]
    (warning,) = near_miss_warnings(parse_rules(enumerate(rows, start=2)).rules, seen, date(2026, 3, 1))
    assert "did you mean `greenbutton`" in warning.message


def test_a_rule_added_after_its_window_closed_is_evaluated_once_from_history(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.clock.now = MARCH[20]
    stack.aggregate([doc("una", MARCH[d]) for d in (2, 3, 4)] + [doc("vic", MARCH[3])], start=1)
    published = datetime(2026, 3, 25, 10, tzinfo=UTC)
    (rule,) = stack.publish(
        [date_row("greater_or_equal", "3", start="2026-03-01", finish="2026-03-10")],
        activation="2026-03-26",
        published_at=published,
    ).rules
    provisional = stack.evaluate(published + timedelta(minutes=5))
    assert provisional["ready"] == 1 and provisional["finalized"] == []
    assert stack.attributes() == {"una": {"trk_date_purchase": "ready"}}

    final = stack.evaluate(datetime(2026, 3, 26, 2, tzinfo=UTC))
    assert (final["actions_sent"], final["finalized"]) == (0, [rule.rule_id])
    stack.aggregate([doc("vic", MARCH[5]), doc("vic", MARCH[6])], start=50)
    after = stack.evaluate(datetime(2026, 3, 27, 2, tzinfo=UTC))
    assert (after["series"], after["actions_sent"]) == (0, 0), "a closed, final window sends nothing more"
    assert stack.attributes() == {"una": {"trk_date_purchase": "ready"}}
