"""The Filter column's grammar (issue #16, item 1): what each operator matches, and the position and
wording of every syntax error a marketer can make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from pia.rules.filters import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_IN_VALUES,
    MAX_LENGTH,
    FilterError,
    compile_filter,
)


@dataclass(frozen=True)
class Seen:
    attributes: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Decimal] = field(default_factory=dict)


def matches(text: str, attributes: Mapping[str, str] | None = None, **metrics: str) -> bool:
    event = Seen(attributes or {}, {k: Decimal(v) for k, v in metrics.items()})
    return compile_filter(text).matches(event)


def error(text: str) -> FilterError:
    with pytest.raises(FilterError) as caught:
        compile_filter(text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "attributes", "expected"),
    [
        ('plan = "gold"', {"plan": "gold"}, True),
        ('plan = "gold"', {"plan": "Gold"}, False),
        ('plan = "gold"', {}, False),
        ('plan != "gold"', {"plan": "silver"}, True),
        ('plan != "gold"', {}, False),
        ('not plan = "gold"', {}, True),
        ("plan in ('gold', \"silver\")", {"plan": "silver"}, True),
        ('plan in ("gold", "silver")', {"plan": "bronze"}, False),
        ('url contains "/checkout"', {"url": "https://x/checkout/1"}, True),
        ('url starts with "https:"', {"url": "http://x"}, False),
        ('url ends with ".pdf"', {"url": "a/b.pdf"}, True),
        ('url ENDS WITH ".pdf" AND NOT url Contains "draft"', {"url": "draft.pdf"}, False),
        ("plan exists", {"plan": ""}, True),
        ("plan exists", {}, False),
        ('`first name` = "Zoë"', {"first name": "Zoë"}, True),
        ('größe = "L" and 名前 = "太郎"', {"größe": "L", "名前": "太郎"}, True),
        ('`say ``hi``` = "it""s"', {"say `hi`": 'it"s'}, True),
        ("note = 'it''s'", {"note": "it's"}, True),
        ('a = "1" or b = "2" and c = "3"', {"a": "1"}, True),
        ('(a = "1" or b = "2") and c = "3"', {"a": "1"}, False),
        ('level = "3"', {"level": "3"}, True),
    ],
)
def test_text_conditions(text: str, attributes: dict[str, str], expected: bool) -> None:
    assert matches(text, attributes) is expected


def test_names_and_values_are_exact_text_without_unicode_normalisation() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert matches(f'drink = "{composed}"', {"drink": composed})
    assert not matches(f'drink = "{composed}"', {"drink": decomposed})


@pytest.mark.parametrize(
    ("text", "metrics", "expected"),
    [
        ("price > 10", {"price": "10.01"}, True),
        ("price > 10", {"price": "10"}, False),
        ("price >= 10", {"price": "10.000"}, True),
        ("price < 0.1", {"price": "0.1"}, False),
        ("price <= 0.1", {"price": "0.1"}, True),
        ("price = 3", {"price": "3.0"}, True),
        ("price != 3", {"price": "3.0"}, False),
        ("price != 3", {}, False),
        ("price in (1, 2.50, 3)", {"price": "2.5"}, True),
        ("price > -1e3", {"price": "-999.5"}, True),
        ("price > 1e300", {"price": "1.7976931348623157e308"}, True),
        ("price exists", {"price": "0"}, True),
        ("price > 10", {}, False),
    ],
)
def test_number_conditions_compare_metrics_exactly(
    text: str, metrics: dict[str, str], expected: bool
) -> None:
    assert matches(text, **metrics) is expected


def test_a_quoted_value_reads_the_attribute_and_a_number_reads_the_metric_of_the_same_name() -> None:
    both = Seen({"level": "3"}, {"level": Decimal(7)})
    assert compile_filter('level = "3"').matches(both)
    assert not compile_filter("level = 3").matches(both)
    assert compile_filter("level = 7").matches(both)
    assert compile_filter("level exists").matches(Seen(metrics={"level": Decimal(1)}))


def test_exact_decimal_comparison_is_not_a_float_comparison() -> None:
    assert not matches("x = 0.1", x="0.1000000000000000055511151231257827")
    assert matches("x > 0.1", x="0.1000000000000000055511151231257827")


@pytest.mark.parametrize(
    ("variant", "same"),
    [
        ('PLAN="gold"  AND  price>=10.0', False),
        ("plan='gold' and price >= 1e1", True),
        ('plan  =  "gold"\nand price >= 10', True),
        ('plan = "gold" AND price >= +10.000', True),
        ('`plan` = "gold" and `price` >= 10', True),
        ('plan = "gold" and price > 10', False),
    ],
)
def test_spacing_keyword_case_quoting_and_number_spelling_keep_the_canonical_text(
    variant: str, same: bool
) -> None:
    base = compile_filter('plan = "gold" and price >= 10')
    assert (compile_filter(variant).canonical == base.canonical) is same
    assert (compile_filter(variant).digest == base.digest) is same


def test_in_lists_are_sets() -> None:
    assert compile_filter('p in ("b", "a", "b")').canonical == compile_filter('p in ("a","b")').canonical


@pytest.mark.parametrize(
    "text",
    [
        'a = "x" or (b != "y" and not c exists)',
        'not (a = "x" or b = "y") and c in (1, 2)',
        'not not `and` starts with "q"',
        "`a b` > 1E+300 or z < 0.00000015",
        '`x``y` contains """quoted"""',
        "n = 9.984e40 or n < -1e40",
    ],
)
def test_the_canonical_text_parses_back_to_the_same_filter(text: str) -> None:
    first = compile_filter(text)
    again = compile_filter(first.canonical)
    assert again.expression == first.expression
    assert again.canonical == first.canonical


@pytest.mark.parametrize(
    ("text", "position", "wording"),
    [
        ('plan = "gold" and price =', 26, 'expected a value after "=", but the filter ends'),
        ("plan = gold", 8, 'gold is not a number; write text in quotes: "gold"'),
        ('"plan" = "gold"', 1, "write a name in backticks"),
        ('a = "1" b = "2"', 9, 'expected and, or, or the end of the filter before "b"'),
        ('(a = "1"', 9, "expected ) to close the ( at position 1"),
        ('a = "1")', 8, "this ) closes no ("),
        ('plan not in ("gold")', 6, 'write "not" before the condition'),
        ('plan in ("gold", 3)', 18, "either text or numbers, not both"),
        ('plan in "gold"', 9, 'expected ( after "in"'),
        ('plan in ("gold" "silver")', 17, "expected , or ) in the list opened at position 9"),
        ('plan in ("gold", )', 18, 'expected a value after ","'),
        ('price > "3"', 9, "> compares numbers (metrics); write the number without quotes"),
        ("plan contains 3", 15, 'contains compares text (attributes); write the text in quotes: "3"'),
        ('plan starts "g"', 13, 'expected "with" after "starts"'),
        ("plan", 5, "expected an operator after the name plan"),
        (
            "plan ~ 3",
            6,
            'expected an operator after the name plan (= != in contains starts with ends with < <= > >= exists), found "~"',
        ),
        ('in = "x"', 1, '"in" is a keyword; write a name spelled like it in backticks: `in`'),
        ('`` = "x"', 1, "empty name"),
        ('`plan = "x"', 1, "the name opened here with ` has no closing `"),
        ('plan = "gold', 8, 'the text opened here with " has no closing "'),
        ("plan = \u201cgold\u201d", 8, "typographic quote"),
        ("", 1, "empty"),
        ('plan = "gold" and', 18, "expected a condition, but the filter ends"),
        ("x = 1e5000000", 5, "exponent is within -400..400"),
        ("x = 1e401", 5, "exponent is within -400..400"),
        ("x = " + "9" * 41, 5, "at most 40 digits"),
        ("x = 1.2.3", 5, "1.2.3 is not a number"),
        ("x = 1_000", 5, "1_000 is not a number"),
        ("x = Infinity", 5, "Infinity is not a number"),
        ('x = "1" && y = "2"', 9, 'expected and, or, or the end of the filter before "&"'),
        ('plan = \u200b"gold"', 8, "found U+200B"),
    ],
)
def test_syntax_errors_name_the_position_and_the_fix(text: str, position: int, wording: str) -> None:
    found = error(text)
    assert found.position == position, str(found)
    assert wording in found.message
    assert str(found).startswith(f"position {position}: ")


def test_a_name_no_attribute_can_have_is_refused_for_text_but_kept_for_metrics() -> None:
    long_name = "n" * 51
    assert "attribute names are at most 50" in error(f'{long_name} = "x"').message
    assert compile_filter(f"{long_name} > 1").matches(Seen(metrics={long_name: Decimal(2)}))


def test_text_no_attribute_value_can_hold_is_refused() -> None:
    assert compile_filter(f'x = "{"v" * 200}"')
    found = error(f'x contains "{"v" * 201}"')
    assert found.position == 12
    assert "at most 200 characters" in found.message


def test_bounds_on_size_conditions_depth_and_lists() -> None:
    at_limit = " or ".join(f'a{i} = "{i}"' for i in range(MAX_CONDITIONS))
    assert len(compile_filter(at_limit).expression.operands) == MAX_CONDITIONS  # type: ignore[union-attr]
    assert f"more than {MAX_CONDITIONS} conditions" in error(at_limit + ' or z = "1"').message

    assert compile_filter("(" * (MAX_DEPTH - 1) + "a exists" + ")" * (MAX_DEPTH - 1))
    deep = error("(" * MAX_DEPTH + "a exists" + ")" * MAX_DEPTH)
    assert deep.position == MAX_DEPTH + 1
    assert f"deeper than {MAX_DEPTH} levels" in deep.message
    assert f"deeper than {MAX_DEPTH} levels" in error("not " * MAX_DEPTH + "a exists").message

    values = ", ".join(str(i) for i in range(MAX_IN_VALUES))
    assert compile_filter(f"x in ({values})")
    assert f"at most {MAX_IN_VALUES} values" in error(f"x in ({values}, {MAX_IN_VALUES})").message

    padded = "a exists" + " " * (MAX_LENGTH - 20) + " or b exists"
    assert len(padded) == MAX_LENGTH
    assert compile_filter(padded)
    assert error(padded + "x").position == MAX_LENGTH + 1
    huge = error("x exists or " * 100_000)
    assert huge.position == MAX_LENGTH + 1
    assert f"at most {MAX_LENGTH} characters" in huge.message


def test_surrounding_whitespace_is_not_part_of_the_filter() -> None:
    assert compile_filter('  plan = "gold"\n').source == 'plan = "gold"'


def test_a_filter_is_compiled_once_however_often_a_ruleset_holding_it_is_loaded() -> None:
    text = 'plan = "gold" and price > 1'
    assert compile_filter(text) is compile_filter(text)
