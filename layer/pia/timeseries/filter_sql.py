"""The Filter column as a SQL predicate over the raw event archive, for the backfill query.

The predicate must select exactly the events the compiled filter (:mod:`pia.rules.filters`) selects,
or the two backfill paths would give different rollups. It is written in Athena's (Trino) dialect with
functions whose meaning DuckDB shares after sqlglot's transpiling, and it holds to the filter's
semantics at each place where SQL differs from Python:

- **Missing names.** ``element_at`` gives ``NULL`` for an attribute or metric the event lacks, and SQL
  would carry that ``NULL`` through ``NOT``; every condition is closed with ``COALESCE(…, FALSE)``, so
  a condition on a missing name is false and ``not`` of it true, as in Python (``plan != "gold"`` is
  false without ``plan``, ``not plan = "gold"`` true).
- **Text** is compared character for character: ``=``, ``IN``, ``strpos`` and ``substr`` on code
  points (Trino's and DuckDB's ``length``/``substr`` count code points, as Python's ``str`` does), no
  case folding, no normalisation. An empty needle (``contains ""``) holds for any present attribute,
  decided here rather than left to each engine's ``strpos`` of an empty string.
- **Numbers** are compared exactly, never as ``DOUBLE`` and never as a ``DECIMAL`` that could not hold
  ``1.8E+308`` or ``1E-400``: both the archived metric text and the filter's number are mapped to an
  ordered key (:func:`number_key`, and the same mapping in SQL), a text whose order as text is the
  order of the numbers. ``-0``, ``0E-10`` and ``0`` are one key; ``1E+3`` and ``1000`` are one key.
  The query computes every metric's key once per event (:func:`metric_keys`, Trino's
  ``transform_values``; DuckDB runs it as ``map`` over ``list_transform``).
- **Literals.** Every name and value from the cell is a single-quoted literal with its quotes doubled;
  neither Trino nor DuckDB reads a backslash as an escape in one, so ``x' OR '1'='1`` stays text. A NUL
  is written ``chr(0)``, concatenated (:func:`quoted`).

A filter whose SQL would be longer than :data:`MAX_PREDICATE` has no SQL form
(:func:`filter_predicate` returns ``None``) and its rule is backfilled in the evaluator instead; the
longest filter the language accepts is far below it, so this is a guard, not a case met.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from pia.rules.filters import AllOf, AnyOf, Exists, Expression, Not, NumberOp, NumberTest, TextOp, TextTest
from pia.timeseries.backfill_sql import literal

MAX_PREDICATE = 32 * 1024
"""Athena accepts a query of at most 262,144 bytes; one filter's predicate takes at most an eighth
(the longest filters the language accepts, 1,000 characters, give about 3 KB)."""

EXPONENT_OFFSET = 1_000_000_000
"""Added to a number's adjusted exponent in its key, so the key holds it as ten digits. Written
exponents are clamped to :data:`EXPONENT_BOUND` first; a filter's numbers lie within ±440, so the
clamp never changes a comparison with one (it only lets ``5E-1000000000000`` have a key at all)."""
EXPONENT_BOUND = 100_000_000
_COMPLEMENT = str.maketrans("0123456789", "9876543210")
_NEGATIVE, _ZERO, _POSITIVE = "0", "1", "2"
_END_OF_NEGATIVE = ":"
"""After a negative number's complemented digits: sorts above every digit, so -1.51 stays below -1.5."""
_NUMBER_TEXT = r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"


def number_key(value: Decimal) -> str:
    """A text whose order is the order of the numbers: sign class, then the adjusted exponent, then the
    significant digits (complemented for a negative number, whose larger magnitude is smaller)."""
    if value.is_zero():
        return _ZERO
    digits = "".join(str(d) for d in value.as_tuple().digits).rstrip("0")
    adjusted = max(-EXPONENT_BOUND, min(EXPONENT_BOUND, value.adjusted()))
    if value.is_signed():
        return (
            f"{_NEGATIVE}{EXPONENT_OFFSET - adjusted:010d}{digits.translate(_COMPLEMENT)}{_END_OF_NEGATIVE}"
        )
    return f"{_POSITIVE}{EXPONENT_OFFSET + adjusted:010d}{digits}"


def number_key_sql(text: str) -> str:
    """:func:`number_key` in SQL, for the metric text ``text`` (``NULL`` when absent or not a number).

    ``digits`` is the mantissa's digits, ``significant`` those without leading zeros (empty for a
    zero) and without trailing ones; the adjusted exponent is the written exponent (clamped to
    :data:`EXPONENT_BOUND`) plus the integer part's length, less the leading zeros and one. A metric's
    text is at most a Kinesis record (1 MB), so the sum stays within ten digits of key."""
    mantissa = f"regexp_extract({text}, '^[+-]?([0-9.]*)', 1)"
    integer = f"regexp_extract({text}, '^[+-]?([0-9]*)', 1)"
    digits = f"replace({mantissa}, '.', '')"
    leading = f"regexp_replace({digits}, '^0+', '')"
    significant = f"regexp_replace({leading}, '0+$', '')"
    written = f"regexp_extract({text}, '[eE][+-]?0*([0-9]*)$', 1)"
    minus = f"regexp_like({text}, '[eE]-')"
    exponent = (
        f"CASE WHEN NOT regexp_like({text}, '[eE]') THEN 0"
        f" WHEN length({written}) > 8 THEN {EXPONENT_BOUND} * (CASE WHEN {minus} THEN -1 ELSE 1 END)"
        f" WHEN {written} = '' THEN 0"
        f" WHEN {minus} THEN -CAST({written} AS BIGINT)"
        f" ELSE CAST({written} AS BIGINT) END"
    )
    adjusted = f"({exponent} + length({integer}) - (length({digits}) - length({leading})) - 1)"
    negative = f"substr({text}, 1, 1) = '-'"
    below, above = (f"lpad(CAST({EXPONENT_OFFSET} {sign} {adjusted} AS varchar), 10, '0')" for sign in "-+")
    return (
        f"CASE WHEN NOT regexp_like({text}, {quoted(_NUMBER_TEXT)}) THEN NULL"
        f" WHEN {significant} = '' THEN '{_ZERO}'"
        f" WHEN {negative} THEN '{_NEGATIVE}' || {below}"
        f" || translate({significant}, '0123456789', '9876543210') || '{_END_OF_NEGATIVE}'"
        f" ELSE '{_POSITIVE}' || {above} || {significant}"
        " END"
    )


def quoted(text: str) -> str:
    """A cell's text as SQL: string literals with their quotes doubled, and a NUL, which a literal
    cannot be relied on to carry through every client and engine, as ``chr(0)`` between them."""
    if "\x00" not in text:
        return literal(text)
    return "(" + " || chr(0) || ".join(literal(part) for part in text.split("\x00")) + ")"


def _closed(condition: str) -> str:
    return f"COALESCE({condition}, FALSE)"


def _text_condition(test: TextTest, attributes: str) -> str:
    found = f"element_at({attributes}, {quoted(test.name)})"
    value = test.values[0]
    match test.op:
        case TextOp.EQ:
            return _closed(f"{found} = {quoted(value)}")
        case TextOp.NE:
            return _closed(f"{found} <> {quoted(value)}")
        case TextOp.IN:
            return _closed(f"{found} IN ({', '.join(quoted(v) for v in test.values)})")
        case _ if not value:
            return f"({found} IS NOT NULL)"
        case TextOp.CONTAINS:
            return _closed(f"strpos({found}, {quoted(value)}) > 0")
        case TextOp.STARTS_WITH:
            return _closed(f"substr({found}, 1, {len(value)}) = {quoted(value)}")
        case TextOp.ENDS_WITH:
            tail = f"substr({found}, length({found}) - {len(value) - 1})"
            return _closed(f"length({found}) >= {len(value)} AND {tail} = {quoted(value)}")


_NUMBER_SQL = {
    NumberOp.EQ: "=",
    NumberOp.NE: "<>",
    NumberOp.LT: "<",
    NumberOp.LE: "<=",
    NumberOp.GT: ">",
    NumberOp.GE: ">=",
}


def _number_condition(test: NumberTest, keys: str) -> str:
    key = f"element_at({keys}, {quoted(test.name)})"
    if test.op is NumberOp.IN:
        return _closed(f"{key} IN ({', '.join(quoted(number_key(v)) for v in test.values)})")
    return _closed(f"{key} {_NUMBER_SQL[test.op]} {quoted(number_key(test.values[0]))}")


def metric_keys(metrics: str = "m") -> str:
    """Every metric of an event as its number key, one map per event, computed once per event and
    not once per condition: the key's SQL is two kilobytes, and a filter may compare 50 metrics."""
    return f"transform_values({metrics}, (metric_name, metric_text) -> {number_key_sql('metric_text')})"


def compares_numbers(expression: Expression) -> bool:
    """Whether the predicate reads :func:`metric_keys` (a column the query adds only when needed)."""
    return any(isinstance(leaf, NumberTest) for leaf in _conditions(expression))


def _conditions(expression: Expression) -> Iterator[Exists | TextTest | NumberTest]:
    match expression:
        case AnyOf(operands) | AllOf(operands):
            for operand in operands:
                yield from _conditions(operand)
        case Not(operand):
            yield from _conditions(operand)
        case _:
            yield expression


def _predicate(expression: Expression, attributes: str, metrics: str, keys: str) -> str:
    match expression:
        case AnyOf(operands):
            return "(" + " OR ".join(_predicate(o, attributes, metrics, keys) for o in operands) + ")"
        case AllOf(operands):
            return "(" + " AND ".join(_predicate(o, attributes, metrics, keys) for o in operands) + ")"
        case Not(operand):
            return f"(NOT {_predicate(operand, attributes, metrics, keys)})"
        case Exists(name):
            return (
                f"(element_at({attributes}, {quoted(name)}) IS NOT NULL"
                f" OR element_at({metrics}, {quoted(name)}) IS NOT NULL)"
            )
        case TextTest():
            return _text_condition(expression, attributes)
        case NumberTest():
            return _number_condition(expression, keys)


def filter_predicate(
    expression: Expression, *, attributes: str = "a", metrics: str = "m", keys: str = "mk"
) -> str | None:
    """The SQL predicate selecting the events ``expression`` matches, over the map columns
    ``attributes`` and ``metrics`` and ``keys``, the :func:`metric_keys` of ``metrics``; ``None``
    when it has no exact SQL form (see the module's text)."""
    predicate = _predicate(expression, attributes, metrics, keys)
    return predicate if len(predicate.encode()) <= MAX_PREDICATE else None
