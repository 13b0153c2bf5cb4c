"""The Filter's SQL form without an engine: the order of number keys, and literals that stay literals."""

from __future__ import annotations

from decimal import Decimal

import sqlglot
from hypothesis import given
from hypothesis import strategies as st

from pia.rules.filters import compile_filter
from pia.timeseries.filter_sql import MAX_PREDICATE, filter_predicate, number_key

finite = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.builds(lambda d, e: Decimal(f"{d}E{e}"), st.integers(-(10**40), 10**40), st.integers(-450, 450)),
    st.sampled_from([Decimal(v) for v in ("-0", "0E-10", "1E+3", "1000", "-1.5", "-1.51", "-1.49")]),
)


@given(finite, finite)
def test_number_keys_order_as_the_numbers_do(left: Decimal, right: Decimal) -> None:
    if left.is_zero() or right.is_zero() or max(abs(left.adjusted()), abs(right.adjusted())) < 10**8:
        assert (number_key(left) < number_key(right)) == (left < right)
        assert (number_key(left) == number_key(right)) == (left == right)


def test_every_name_and_text_of_a_hostile_filter_stays_one_string_literal() -> None:
    hostile = "x' OR '1'='1"
    expression = compile_filter(
        f'name = "{hostile}" and `{hostile}` starts with "\\\'" or n > 1e3'
    ).expression
    predicate = filter_predicate(expression)
    assert predicate is not None

    (statement,) = sqlglot.parse(f"SELECT 1 FROM t WHERE {predicate}", read="trino")
    assert statement is not None
    literals = {node.this for node in statement.find_all(sqlglot.exp.Literal) if node.is_string}
    assert {hostile, "\\'"} <= literals
    assert not [c for c in statement.find_all(sqlglot.exp.Or) if "1" in {str(x) for x in c.args.values()}]


def test_the_longest_filters_the_language_accepts_fit_one_query_many_times_over() -> None:
    """50 conditions, 1,000 characters, names and texts at their bounds, every quote doubled."""
    quotes = chr(39) * 48
    longest = [
        " or ".join(f"a > {i}" for i in range(50)),
        " or ".join(f"`{'n' * 13}{i:02d}` > 1e-400" for i in range(33)),
        " or ".join(f'`{quotes}{i:02d}` ends with "{chr(39) * 100}"' for i in range(5)),
    ]
    predicates = [filter_predicate(compile_filter(text).expression) for text in longest]
    sizes = [len(p.encode()) for p in predicates if p is not None]
    assert len(sizes) == 3 and max(sizes) * 4 < MAX_PREDICATE, sizes


def test_a_nul_in_a_name_or_text_is_written_as_chr_0() -> None:
    predicate = filter_predicate(compile_filter('`a\x00b` = "x\x00\x00" or c exists').expression)

    assert predicate is not None and "\x00" not in predicate
    assert "element_at(a, ('a' || chr(0) || 'b')) = ('x' || chr(0) || '' || chr(0) || '')" in predicate
