"""Rule-table edges (issue #15): rows that validated but collided, wrote where they must not, or
carried a number too large to work with."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from pia.core.events import Event
from pia.counting.counters import CounterState, Position, apply_events, group_by_counter
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset
from pia.rules.table import ParseResult, parse_rules
from pia.timeseries.rollups import DayTotal, SeriesRollup, date_action, decide, plan_series
from tests.conftest import CASE_COURSE as COURSE
from tests.conftest import CASE_GREENBUTTON as GREEN
from tests.conftest import CASE_PURCHASE as PURCHASE
from tests.conftest import rule_row

MOMENT = datetime(2021, 1, 15, 12, tzinfo=UTC)


def parse(*rows: dict[str, str]) -> ParseResult:
    return parse_rules(enumerate(rows, start=2))


def event(name: str, attributes: dict[str, str] | None = None, **metrics: str) -> Event:
    return Event(
        user_id="alice",
        event_type=name,
        timestamp=MOMENT,
        attributes=attributes or {},
        metrics={k: Decimal(v) for k, v in metrics.items()},
    )


def outputs_fired(rules: tuple[Rule, ...], events: list[Event]) -> list[str]:
    """What the aggregator sends for one user's events under these rules."""
    positioned = [(Position("shard-0", i + 1), e) for i, e in enumerate(events)]
    fired: list[str] = []
    for rule, run in group_by_counter(positioned, Ruleset(1, rules).aggregator_rules).values():
        step = apply_events(CounterState(rule.rule_id, "alice"), rule, run, now=0, lane_retention_seconds=60)
        fired.extend(a.output_name for a in step.actions)
    return sorted(fired)


# Defect 3: collisions.


def test_two_aggregator_rules_that_differ_only_in_output_both_fire() -> None:
    result = parse(rule_row(*GREEN), rule_row(*GREEN, OutputName="trk_green_fan"))
    assert result.errors == ()
    assert outputs_fired(result.rules, [event("greenbutton")] * 6) == ["trk_green_fan", "trk_greenbutton"]


def test_two_date_rules_that_differ_only_in_output_never_share_an_action() -> None:
    result = parse(rule_row(*PURCHASE), rule_row(*PURCHASE, OutputName="trk_big_buyer"))
    assert result.errors == ()
    rollup = SeriesRollup("purchase", "alice", days={date(2021, 1, 15): DayTotal(1, Decimal(600))})
    decisions = decide(rollup, result.rules, date(2021, 1, 20))
    actions = [
        date_action(d, rollup, cause=("shard-0", 7), lane="shard-0", occurred_at=MOMENT) for d in decisions
    ]
    assert sorted(a.output_name for a in actions) == ["trk_big_buyer", "trk_date_purchase"]
    assert len({a.action_id for a in actions}) == 2


def test_rule_ids_stay_as_they_were_for_rules_with_the_default_output() -> None:
    """Ids are the counters' keys: a rule that keeps its default output keeps its counts."""
    explicit = parse(rule_row(*GREEN, OutputName="trk_greenbutton")).rules[0]
    default = parse(rule_row(*GREEN)).rules[0]
    assert explicit.rule_id == default.rule_id == "bed94bbecd93320a"
    assert parse(rule_row(*PURCHASE)).rules[0].rule_id == "c425ae004b2bee67"


def date_row(output: str, attribute: tuple[str, str], metric: str | None) -> dict[str, str]:
    count = ("greater", "1", "na", "999") if metric is None else ("na", "999", "greater", "5")
    return rule_row(
        "date",
        "buy",
        *attribute,
        *count,
        "no",
        "2021-01-01",
        "2021-02-01",
        OutputName=output,
        MetricName=metric or "",
    )


@pytest.mark.parametrize(
    ("first", "first_metric", "second", "second_metric"),
    [
        (("tag", "vip#price"), None, ("tag", "vip"), "price"),
        (("a=b", "c"), None, ("a", "b=c"), None),
        (("k", "v|x=y"), None, ("k=v|x", "y"), None),
        (("k", "v\\"), "m", ("k", "v\\#m"), None),
    ],
)
def test_rules_reading_different_events_never_share_a_rollup(
    first: tuple[str, str], first_metric: str | None, second: tuple[str, str], second_metric: str | None
) -> None:
    """A count rule filtered on ``tag = vip#price`` and a rule summing ``price`` over ``tag = vip``
    used to read one series, so each counted the other's events."""
    result = parse(date_row("trk_one", first, first_metric), date_row("trk_two", second, second_metric))
    assert result.errors == ()
    plans = plan_series(Ruleset(1, result.rules), date(2021, 1, 20))
    assert len(plans) == 2
    first_only = event("buy", {first[0]: first[1]}, price="9", m="1")
    readers = [p.rules[0].output_name for p in plans.values() if p.matches(first_only)]
    assert readers == ["trk_one"]


# Defect 4: what an output may be called.


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("plan", "must start with trk_"),
        ("greenbutton", "must start with trk_"),
        ("TRK_loyal", "must start with trk_"),
        ("trk_", "needs a name after trk_"),
        ("trk_a/b", '"/"'),
        ("trk_a#b", '"#"'),
        ("trk_a:b", '":"'),
        ("trk_a?b", '"?"'),
        ("trk_a\\b", '"\\"'),
        ("trk_a\x1b[2Jb", "control character"),
        ("trk_a\u202eb", "control character"),
    ],
)
def test_an_output_name_is_a_trk_name_pinpoint_accepts(output: str, reason: str) -> None:
    """A reset rule writing ``greenbutton`` would feed its own event back into the stream forever,
    and one writing ``plan`` would overwrite an attribute the app owns."""
    result = parse(rule_row(*GREEN), rule_row(*COURSE, OutputName=output))
    ((row, column, message),) = [(e.row, e.column, e.message) for e in result.errors]
    assert (row, column) == (3, "OutputName") and reason in message
    assert [r.output_name for r in result.rules] == ["trk_greenbutton"]


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ({"EventName": "screen/view"}, "EventName"),
        ({"AttributeName": "city", "AttributeValue": "a:b"}, "AttributeValue"),
    ],
)
def test_a_default_output_name_follows_the_same_rule_and_names_the_cell_it_came_from(
    cells: dict[str, str], column: str
) -> None:
    row = {**rule_row(*GREEN), **cells}
    (error,) = parse(row).errors
    assert error.column == column and "set an OutputName" in error.message
    assert parse({**row, "OutputName": "trk_screen_view"}).errors == ()


def test_names_with_spaces_and_any_script_are_accepted() -> None:
    row = rule_row(*GREEN, OutputName="trk_Großer Kunde 買い物")
    (rule,) = parse(row).rules
    assert rule.output_name == "trk_Großer Kunde 買い物"


def test_a_metric_name_beyond_its_bound_is_an_error() -> None:
    row = rule_row(*PURCHASE, MetricName="m" * 257)
    (error,) = parse(row).errors
    assert (error.row, error.column) == (2, "MetricName") and "256" in error.message


# Defect 6: numbers that make work explode.


@pytest.mark.parametrize(
    ("column", "text"),
    [
        ("Target-C", "1e5000000"),
        ("Target-V", "1e5000000"),
        ("Target-V", "-1E+126"),
        ("Target-V", "1e-131"),
        ("Target-C", "1" * 39),
        ("Target-V", "0." + "1" * 39),
        ("Target-V", "1" * 10_000),
    ],
)
def test_a_target_beyond_dynamodb_numbers_is_an_error(column: str, text: str) -> None:
    row = {**rule_row(*GREEN), "Operator-V": "greater", column: text}
    (error,) = parse(row).errors
    assert (error.row, error.column) == (2, column) and "38 significant digits" in error.message


@pytest.mark.parametrize("text", ["1e125", "9" * 38, "-0.5", "0", "1E-130", "1,000,000"])
def test_large_and_small_targets_within_range_are_kept_exactly(text: str) -> None:
    (rule,) = parse({**rule_row(*GREEN), "Operator-V": "greater", "Target-V": text}).rules
    assert rule.sum_condition is not None and rule.sum_condition.target == Decimal(text.replace(",", ""))
