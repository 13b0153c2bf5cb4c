"""The Aggregate and Output columns in the rule table (issue #16, item 2): validation per row, rule
identity against a ruleset published before the columns, the stored ruleset, and what each
aggregate reads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pia.core.events import Event
from pia.rules.aggregates import Aggregate, average_text, mean, parse_aggregate, value_text
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset, content_hash
from pia.rules.sheets import read_table
from pia.rules.table import ParseResult, parse_rules, parse_table
from tests.conftest import CASE_GREENBUTTON as GREEN
from tests.conftest import CASE_PURCHASE as PURCHASE
from tests.conftest import PURCHASE_NO_CONDITION, rule_row


def parse(*rows: dict[str, str]) -> ParseResult:
    return parse_rules(enumerate(rows, start=2))


def value_rule(aggregate: str = "sum", **extra: str) -> dict[str, str]:
    cells = {"Aggregate": aggregate, "Output": "value", "MetricName": "price", "OutputName": "trk_ltv"}
    return rule_row(*PURCHASE_NO_CONDITION, **{**cells, **extra})


def event(attributes: dict[str, str] | None = None, **metrics: str) -> Event:
    return Event(
        "u1",
        "purchase",
        datetime(2026, 1, 1, tzinfo=UTC),
        attributes or {},
        {k: Decimal(v) for k, v in metrics.items()},
    )


BEFORE_THE_COLUMNS = b"""RuleType,EventName,AttributeName,AttributeValue,Operator-C,Target-C,Operator-V,Target-V,ResetWhenReachTarget,StartDate,FinishDate,MetricName,Window
aggregator,greenbutton,na,na,greater,5,na,999,no,9999-99-99,9999-99-99,na,na
aggregator,course_completed,na,na,equal,3,na,999,yes,9999-99-99,9999-99-99,na,na
date,purchase,na,na,na,999,greater,500,no,2026-04-27,2026-04-30,price,na
aggregator,purchase,category,books,greater_or_equal,2,na,999,no,9999-99-99,9999-99-99,na,na
aggregator,video_watched,genre,sports,na,999,greater,3600,yes,9999-99-99,9999-99-99,seconds,na
date,level_up,na,na,greater_or_equal,4,na,999,no,9999-99-99,9999-99-99,na,last 3 days
"""
PUBLISHED_IDS = [
    "bed94bbecd93320a",
    "8fefeb6d6f14afc4",
    "325c88dcd8877fa4",
    "f2bd1192fd6c9bd8",
    "b49846437ebb97d7",
    "bcc08cf3f1fdef8a",
]
PUBLISHED_HASH = "6e29e8d8cf221fb62b3ae4a9688bc163d5d004c94eb878f345756b68ecb8a478"
"""The demo table's ids and content hash as published by main at 75c79f7, before the columns."""


@pytest.mark.parametrize(
    "extra", [{}, {"Aggregate": "", "Output": ""}, {"Aggregate": "count", "Output": "ready"}]
)
def test_a_ruleset_published_before_the_columns_keeps_its_ids_and_content_hash(extra: dict[str, str]) -> None:
    header, *lines = BEFORE_THE_COLUMNS.decode().splitlines()
    names = header.split(",") + list(extra)
    text = "\n".join([",".join(names), *(line + "".join("," + v for v in extra.values()) for line in lines)])
    result = parse_table(read_table("rules.csv", text.encode()))
    assert not result.errors
    assert [r.rule_id for r in result.rules] == PUBLISHED_IDS
    assert content_hash(result.rules) == PUBLISHED_HASH
    assert all("aggregate" not in r.to_json() and "output" not in r.to_json() for r in result.rules)


def test_every_aggregate_but_count_and_a_value_output_make_a_different_rule() -> None:
    base = rule_row(*GREEN, MetricName="price", **{"Operator-V": "greater", "Target-V": "5"})
    (plain,) = parse(base).rules
    ids = {plain.rule_id}
    for aggregate in ("sum", "avg", "min", "max", "distinct(sku)", "distinct(color)"):
        (rule,) = parse({**base, "Aggregate": aggregate}).rules
        ids.add(rule.rule_id)
    assert len(ids) == 7
    (counted,) = parse({**base, "Aggregate": "COUNT"}).rules
    assert counted.rule_id == plain.rule_id
    (sum_value,) = parse(value_rule()).rules
    (sum_ready,) = parse(
        rule_row(
            *PURCHASE_NO_CONDITION,
            Aggregate="sum",
            MetricName="price",
            OutputName="trk_ltv",
            **{"Operator-C": ">", "Target-C": "0"},
        )
    ).rules
    assert sum_value.rule_id != sum_ready.rule_id


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("", (Aggregate.COUNT, None)),
        ("na", (Aggregate.COUNT, None)),
        ("Average", (Aggregate.AVG, None)),
        (" MAX ", (Aggregate.MAX, None)),
        ("distinct( product id )", (Aggregate.DISTINCT, "product id")),
        ("DISTINCT(sku)", (Aggregate.DISTINCT, "sku")),
    ],
)
def test_aggregate_cells(cell: str, expected: tuple[Aggregate, str | None]) -> None:
    assert parse_aggregate(cell) == expected


@pytest.mark.parametrize(
    ("cells", "column", "message"),
    [
        ({"Aggregate": "median"}, "Aggregate", '"median" is not an aggregate; use count, sum, avg'),
        ({"Aggregate": "distinct"}, "Aggregate", "distinct needs an attribute name"),
        ({"Aggregate": "distinct()"}, "Aggregate", "distinct needs an attribute name"),
        ({"Aggregate": f"distinct({'a' * 51})"}, "Aggregate", "longer than 50 characters"),
        ({"Output": "values"}, "Output", '"values" must be ready (the default) or value'),
    ],
)
def test_bad_cells_are_row_errors_naming_the_column(cells: dict[str, str], column: str, message: str) -> None:
    result = parse(rule_row(*GREEN, **cells), rule_row(*PURCHASE))
    (issue,) = result.errors
    assert (issue.row, issue.column) == (2, column)
    assert message in issue.message
    assert [r.row for r in result.rules] == [3], "the other row still loads"


def test_a_value_rule_has_no_condition_and_never_resets() -> None:
    (rule,) = parse(value_rule()).rules
    assert rule.writes_value and rule.aggregate is Aggregate.SUM and rule.output_name == "trk_ltv"
    with_condition = value_rule(**{"Operator-V": "greater", "Target-V": "5"})
    (issue,) = parse(with_condition).errors
    assert (issue.column, issue.message) == (
        "Operator-V",
        "a rule with Output = value writes its aggregate whatever it is; set na here",
    )
    (issue,) = parse(value_rule(ResetWhenReachTarget="yes")).errors
    assert issue.column == "ResetWhenReachTarget"


@pytest.mark.parametrize("aggregate", ["min", "max", "distinct(sku)"])
def test_date_rules_refuse_what_daily_rollups_cannot_give(aggregate: str) -> None:
    (issue,) = parse(rule_row(*PURCHASE, Aggregate=aggregate)).errors
    assert issue.column == "Aggregate"
    assert "not available for date rules" in issue.message


def test_date_rules_take_count_sum_and_avg_but_no_value_output() -> None:
    for aggregate in ("count", "sum", "avg"):
        assert parse(rule_row(*PURCHASE, Aggregate=aggregate)).rules
    (issue,) = parse(rule_row(*PURCHASE, Output="value", **{"Operator-V": "na"})).errors
    assert issue.column == "Output"


def test_a_distinct_target_past_the_bound_is_refused() -> None:
    row = rule_row(*GREEN, Aggregate="distinct(sku)", **{"Operator-V": ">=", "Target-V": "1000"})
    assert parse(row).rules
    (issue,) = parse({**row, "Target-V": "1001"}).errors
    assert issue.column == "Target-V" and "stop at 1000" in issue.message


def test_metric_aggregates_read_only_events_with_the_metric_and_distinct_only_events_with_the_attribute() -> (
    None
):
    (avg,) = parse(value_rule("avg")).rules
    assert avg.matches(event(price="3")) and not avg.matches(event(qty="3"))
    (distinct,) = parse(value_rule("distinct(sku)", MetricName="na")).rules
    assert distinct.matches(event({"sku": "a"})) and not distinct.matches(event(price="1"))
    (counted,) = parse(
        rule_row(*PURCHASE_NO_CONDITION, MetricName="price", **{"Operator-V": ">", "Target-V": "1"})
    ).rules
    assert counted.matches(event(qty="3")), "count keeps its meaning: every event counts"


def test_a_sum_or_avg_date_rule_reads_a_series_of_measured_events_only() -> None:
    (plain,) = parse(rule_row(*PURCHASE, MetricName="price")).rules
    (summed,) = parse(rule_row(*PURCHASE, MetricName="price", Aggregate="sum")).rules
    (averaged,) = parse(rule_row(*PURCHASE, MetricName="price", Aggregate="avg")).rules
    assert plain.series == "purchase#price"
    assert summed.series == averaged.series == "purchase#price#measured"


def test_operator_v_compares_the_chosen_aggregate() -> None:
    row = rule_row(*GREEN, MetricName="price", **{"Operator-C": "na", "Operator-V": ">", "Target-V": "10"})
    (counted,) = parse(row).rules
    (averaged,) = parse({**row, "Aggregate": "avg"}).rules
    assert counted.is_met(3, Decimal(30), Decimal(10)), "count compares the sum, as before"
    assert not averaged.is_met(3, Decimal(30), Decimal(10))
    assert averaged.is_met(3, Decimal(33), Decimal(11))
    assert not averaged.is_met(0, Decimal(0), None), "no value yet meets no condition"
    assert averaged.is_met(1, Decimal("10.0000000000000000000000001")), "exactly, not through the rounding"
    assert not averaged.is_met(3, Decimal("30.0000000000000000000000001") - Decimal("1E-25"))


def test_the_stored_ruleset_round_trips_the_columns() -> None:
    rows = (value_rule("distinct(sku)", MetricName="na"), value_rule("avg", OutputName="trk_aov"))
    rules = parse(*rows).rules
    body = Ruleset(version=1, rules=rules).to_json()
    assert [r.get("aggregate") for r in body["rules"]] == ["distinct(sku)", "avg"]
    assert [r.get("output") for r in body["rules"]] == ["value", "value"]
    assert Ruleset.from_json(body).rules == rules
    assert Rule.from_json(rules[0].to_json()).distinct_attribute == "sku"


def test_mean_is_exact_and_rounded_half_even_to_six_places() -> None:
    assert mean(Decimal(0), 0) is None
    assert mean(Decimal(1), 3) == Decimal("0.333333")
    assert mean(Decimal("0.0000025"), 1) == Decimal("0.000002")
    assert mean(Decimal("0.0000035"), 1) == Decimal("0.000004")
    assert mean(Decimal("-7"), 2) == Decimal("-3.500000")
    huge = Decimal("1.7976931348623157e308")
    assert mean(huge * 3, 3) == huge
    assert average_text(Decimal("-3.500000")) == "-3.5"
    assert average_text(Decimal("412.000000")) == "412"
    assert average_text(Decimal("-0.000000")) == "0"


def test_value_text_keeps_the_places_of_a_sum_and_stays_short() -> None:
    assert value_text(Decimal("412.50")) == "412.50"
    assert value_text(Decimal("1E+3")) == "1000"
    assert value_text(Decimal("1.7976931348623157e308")) == "1.7976931348623157E+308"


@pytest.mark.parametrize(
    ("cells", "column"), [({"Aggregate": "avg"}, "Aggregate"), ({"Output": "value"}, "Output")]
)
def test_an_absence_rule_takes_no_aggregate_and_no_value_output(cells: dict[str, str], column: str) -> None:
    absence = rule_row(
        "date",
        "purchase",
        "na",
        "na",
        "absent",
        "na",
        "na",
        "999",
        "no",
        "9999-99-99",
        "9999-99-99",
        Window="last 3 days",
    )
    assert parse(absence).rules
    issues = parse({**absence, **cells}).errors
    assert column in {i.column for i in issues}
