"""The table syntax of absence rules: Operator-C ``absent`` over a rolling Window, with row errors."""

from __future__ import annotations

from datetime import date

from pia.rules.model import Rule, RuleType
from pia.rules.table import parse_rules
from tests.conftest import rule_row


def absence_row(**cells: str) -> dict[str, str]:
    row = rule_row(
        "date", "purchase", "na", "na", "absent", "na", "na", "999", "no", "9999-99-99", "9999-99-99"
    )
    row["Window"] = "last 30 days"
    row.update(cells)
    return row


def test_absent_over_a_window_is_an_absence_date_rule_named_for_what_it_means() -> None:
    parsed = parse_rules([(2, absence_row())])
    assert not parsed.issues
    (rule,) = parsed.rules
    assert (rule.rule_type, rule.absent, rule.window_days) == (RuleType.DATE, True, 30)
    assert rule.output_name == "trk_absent_purchase"
    assert rule.count_condition is None and rule.sum_condition is None
    assert Rule.from_json(rule.to_json()) == rule


def test_an_absence_rule_reads_the_same_rollups_as_a_count_rule_on_the_same_events() -> None:
    count = rule_row(
        "date", "purchase", "na", "na", "greater", "0", "na", "999", "no", "9999-99-99", "9999-99-99"
    )
    count["Window"] = "last 7 days"
    parsed = parse_rules([(2, absence_row()), (3, count)])
    absent, counted = parsed.rules
    assert absent.series == counted.series
    assert absent.rule_id != counted.rule_id and absent.output_name != counted.output_name


def test_existing_rows_keep_their_json_and_ids() -> None:
    row = rule_row(
        "date", "purchase", "na", "na", "greater", "0", "na", "999", "no", "2026-03-01", "2026-03-31"
    )
    (rule,) = parse_rules([(2, row)]).rules
    assert "absent" not in rule.to_json()
    assert rule.rule_id == parse_rules([(2, dict(row))]).rules[0].rule_id


def test_the_window_of_an_absence_rule_holds_today_and_everything_stamped_later() -> None:
    (rule,) = parse_rules([(2, absence_row(Window="last 14 days"))]).rules
    assert rule.window_for(date(2026, 3, 20)) == (date(2026, 3, 7), date.max)


def errors_of(row: dict[str, str]) -> list[tuple[int, str, str]]:
    parsed = parse_rules([(7, row)])
    assert not parsed.rules
    return [(i.row, i.column, i.message) for i in parsed.errors]


def test_each_misuse_is_an_error_naming_its_row_and_column() -> None:
    assert errors_of(absence_row(Window="na")) == [
        (7, "Window", 'absent needs a Window, the quiet period: for example "last 30 days"')
    ]
    assert errors_of(absence_row(**{"Target-C": "3"})) == [
        (7, "Target-C", '"3" must be na: absent compares no count')
    ]
    assert [e[1] for e in errors_of(absence_row(**{"Operator-V": "greater", "Target-V": "5"}))] == [
        "Operator-V"
    ]
    assert [e[1] for e in errors_of(absence_row(RuleType="aggregator", Window="na"))] == [
        "RuleType",
        "Window",
    ]
    assert [e[1] for e in errors_of(absence_row(StartDate="2026-03-01", FinishDate="2026-03-31"))] == [
        "StartDate"
    ]
    assert [e[1] for e in errors_of(absence_row(Window="last 400 days"))] == ["Window"]


def test_one_bad_absence_row_leaves_the_others_live() -> None:
    parsed = parse_rules([(2, absence_row(Window="na")), (3, absence_row(EventName="app_open"))])
    assert [r.output_name for r in parsed.rules] == ["trk_absent_app_open"]
    assert [i.row for i in parsed.errors] == [2]


def test_the_operator_word_is_matched_without_regard_to_case() -> None:
    assert parse_rules([(2, absence_row(**{"Operator-C": "Absent"}))]).rules[0].absent
