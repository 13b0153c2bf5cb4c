"""The Filter column in the rule table (issue #16, item 1): validation per row, identity, output
names, the stored ruleset, and what a filtered rule counts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pia.core.events import Event
from pia.rules.model import Rule
from pia.rules.ruleset import Ruleset, content_hash
from pia.rules.table import ParseResult, parse_rules
from tests.conftest import CASE_GREENBUTTON as GREEN
from tests.conftest import CASE_PURCHASE as PURCHASE
from tests.conftest import rule_row

THREE_CLAUSES = 'country = "FR" and plan in ("gold", "silver") and price >= 20'


def parse(*rows: dict[str, str]) -> ParseResult:
    return parse_rules(enumerate(rows, start=2))


def event(attributes: dict[str, str] | None = None, **metrics: str) -> Event:
    return Event(
        "u1",
        "greenbutton",
        datetime(2026, 1, 1, tzinfo=UTC),
        attributes or {},
        {k: Decimal(v) for k, v in metrics.items()},
    )


def filtered(text: str = THREE_CLAUSES, base: tuple[str, ...] = GREEN, **extra: str) -> dict[str, str]:
    return rule_row(*base, **{"Filter": text, "OutputName": "trk_fr_gold_buyers", **extra})


def test_a_filtered_rule_counts_only_matching_events() -> None:
    (rule,) = parse(filtered()).rules
    assert rule.matches(event({"country": "FR", "plan": "gold"}, price="20"))
    assert not rule.matches(event({"country": "FR", "plan": "gold"}, price="19.99"))
    assert not rule.matches(event({"country": "DE", "plan": "gold"}, price="99"))
    assert not rule.matches(event({"country": "FR"}, price="99"))


def test_the_column_is_matched_by_name_and_na_or_empty_means_no_filter() -> None:
    (rule,) = parse(rule_row(*GREEN, **{" filter ": 'x = "1"', "Output_Name": "trk_x"})).rules
    assert rule.filter is not None
    for blank in ("", "na", "NA"):
        (plain,) = parse(rule_row(*GREEN, Filter=blank)).rules
        assert plain.filter is None
        assert plain.output_name == "trk_greenbutton"


def test_a_syntax_error_is_a_row_error_naming_the_column_and_position_and_other_rows_still_load() -> None:
    result = parse(filtered('country = "FR" and plan ='), rule_row(*PURCHASE))
    (issue,) = result.errors
    assert str(issue) == 'row 2, Filter: position 26: expected a value after "=", but the filter ends'
    assert [r.row for r in result.rules] == [3]


def test_a_filtered_rule_needs_an_output_name() -> None:
    result = parse(rule_row(*GREEN, Filter=THREE_CLAUSES))
    (issue,) = result.errors
    assert issue.column == "OutputName"
    assert "a rule with a Filter needs an OutputName" in issue.message
    assert not result.rules


def test_a_filter_that_looks_like_a_formula_gets_the_formula_message_only() -> None:
    (issue,) = parse(filtered('=country = "FR"')).errors
    assert issue.column == "Filter"
    assert "looks like a spreadsheet formula" in issue.message


def test_attribute_pair_and_filter_are_anded() -> None:
    row = filtered("price > 10", AttributeName="platform", AttributeValue="ios")
    (rule,) = parse(row).rules
    assert rule.matches(event({"platform": "ios"}, price="11"))
    assert not rule.matches(event({"platform": "android"}, price="11"))
    assert not rule.matches(event({"platform": "ios"}, price="10"))


def test_a_different_filter_is_a_different_rule_but_spacing_and_case_are_not() -> None:
    (base,) = parse(filtered()).rules
    (respaced,) = parse(filtered('country="FR"  AND plan IN (\'silver\',"gold") AND price>=20.0')).rules
    (other,) = parse(filtered(THREE_CLAUSES.replace("20", "21"))).rules
    (unfiltered,) = parse(rule_row(*GREEN, OutputName="trk_fr_gold_buyers")).rules
    assert respaced.rule_id == base.rule_id
    assert len({base.rule_id, other.rule_id, unfiltered.rule_id}) == 3


def test_rules_without_a_filter_keep_their_ids_and_stored_form() -> None:
    (rule,) = parse(rule_row(*GREEN)).rules
    assert rule.rule_id == "bed94bbecd93320a"
    assert "filter" not in rule.to_json()


def test_a_date_rule_with_a_filter_reads_its_own_series() -> None:
    (plain,) = parse(rule_row(*PURCHASE)).rules
    (narrowed,) = parse(filtered(base=PURCHASE)).rules
    (narrower,) = parse(filtered(THREE_CLAUSES + " and coupon exists", base=PURCHASE)).rules
    assert plain.series == "purchase#*"
    assert narrowed.series.startswith("purchase|filter:") and narrowed.series.endswith("#*")
    assert len({plain.series, narrowed.series, narrower.series}) == 3


def test_the_stored_ruleset_carries_the_source_and_recompiles_it_on_load() -> None:
    (rule,) = parse(filtered("  " + THREE_CLAUSES)).rules
    body = Ruleset(version=1, rules=(rule,)).to_json()
    assert body["rules"][0]["filter"] == THREE_CLAUSES
    (loaded,) = Ruleset.from_json(body).rules
    assert loaded == rule
    assert loaded.filter is not None and loaded.filter.canonical == rule.filter.canonical  # type: ignore[union-attr]
    assert loaded.matches(event({"country": "FR", "plan": "silver"}, price="25"))
    assert content_hash([loaded]) == content_hash([rule])


def test_from_json_of_a_rule_without_filter_key_is_unfiltered() -> None:
    (rule,) = parse(rule_row(*GREEN)).rules
    assert Rule.from_json(rule.to_json()).filter is None
