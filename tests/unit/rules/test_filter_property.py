"""Property (issue #16): a compiled filter agrees with a plain interpreter of the same expression.

Expressions are generated here as nested tuples, written out as filter text by this file's own
writer (random keyword case, spacing and quote style), and evaluated by this file's own interpreter;
nothing of the parser's tree or closures is used to decide the expected answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pia.rules.filters import compile_filter

Node = tuple[Any, ...]

NAMES = ("plan", "country", "first name", "größe", "in", "x`y", "price", "qty")
TEXTS = ("gold", "", "Gold", 'say "hi"', "it's", "gö", "go", "g")
NUMBERS = tuple(Decimal(v) for v in ("0", "-1.5", "10", "10.0", "1e3", "0.1", "7"))

names = st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=6))
texts = st.one_of(st.sampled_from(TEXTS), st.text(max_size=6))
numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.decimals(min_value=-10_000, max_value=10_000, places=3, allow_nan=False, allow_infinity=False),
)

text_ops = st.sampled_from(("=", "!=", "contains", "starts with", "ends with"))
number_ops = st.sampled_from(("=", "!=", "<", "<=", ">", ">="))

leaves = st.one_of(
    st.tuples(st.just("exists"), names),
    st.tuples(st.just("text"), text_ops, names, texts.map(lambda t: (t,))),
    st.tuples(st.just("text"), st.just("in"), names, st.lists(texts, min_size=1, max_size=4).map(tuple)),
    st.tuples(st.just("number"), number_ops, names, numbers.map(lambda n: (n,))),
    st.tuples(st.just("number"), st.just("in"), names, st.lists(numbers, min_size=1, max_size=4).map(tuple)),
)


def expressions(depth: int) -> st.SearchStrategy[Node]:
    if depth == 0:
        return leaves
    inner = expressions(depth - 1)
    return st.one_of(
        leaves,
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(("and", "or")), st.lists(inner, min_size=2, max_size=3).map(tuple)),
    )


def interpret(node: Node, attributes: Mapping[str, str], metrics: Mapping[str, Decimal]) -> bool:
    kind = node[0]
    if kind == "not":
        return not interpret(node[1], attributes, metrics)
    if kind == "and":
        return all(interpret(child, attributes, metrics) for child in node[1])
    if kind == "or":
        return any(interpret(child, attributes, metrics) for child in node[1])
    if kind == "exists":
        return node[1] in attributes or node[1] in metrics
    _, op, name, values = node
    found = (attributes if kind == "text" else metrics).get(name)
    if found is None:
        return False
    if op == "=":
        return bool(found == values[0])
    if op == "!=":
        return bool(found != values[0])
    if op == "in":
        return found in values
    if op == "contains":
        return values[0] in found
    if op == "starts with":
        return bool(found.startswith(values[0]))
    if op == "ends with":
        return bool(found.endswith(values[0]))
    return bool(
        {"<": found < values[0], "<=": found <= values[0], ">": found > values[0], ">=": found >= values[0]}[
            op
        ]
    )


@dataclass(frozen=True)
class Style:
    upper: bool
    tight: bool
    single_quotes: bool
    always_backtick: bool


def write(node: Node, style: Style) -> str:
    def keyword(word: str) -> str:
        return word.upper() if style.upper else word

    def name(text: str) -> str:
        plain = text.isidentifier() and text.lower() not in {
            "and",
            "or",
            "not",
            "in",
            "contains",
            "starts",
            "ends",
            "with",
            "exists",
        }
        return text if plain and not style.always_backtick else "`" + text.replace("`", "``") + "`"

    def value(v: str | Decimal) -> str:
        if isinstance(v, Decimal):
            return str(v)
        quote = "'" if style.single_quotes else '"'
        return quote + v.replace(quote, quote * 2) + quote

    gap = "" if style.tight else " "
    kind = node[0]
    if kind == "not":
        return f"{keyword('not')} ({write(node[1], style)})"
    if kind in ("and", "or"):
        return "(" + f" {keyword(kind)} ".join(write(child, style) for child in node[1]) + ")"
    if kind == "exists":
        return f"{name(node[1])} {keyword('exists')}"
    _, op, subject, values = node
    if op == "in":
        return f"{name(subject)} {keyword('in')} ({','.join(value(v) for v in values)})"
    if op in ("contains", "starts with", "ends with"):
        return f"{name(subject)} {keyword(op)} {value(values[0])}"
    return f"{name(subject)}{gap}{op}{gap}{value(values[0])}"


def _pairs(node: Node) -> tuple[list[str], list[str]]:
    """Names the expression reads as text and as numbers, so events hit them often."""
    if node[0] in ("and", "or"):
        found: tuple[list[str], list[str]] = ([], [])
        for child in node[1]:
            texts_, numbers_ = _pairs(child)
            found[0].extend(texts_)
            found[1].extend(numbers_)
        return found
    if node[0] == "not":
        return _pairs(node[1])
    if node[0] == "exists":
        return [node[1]], [node[1]]
    return ([node[2]], []) if node[0] == "text" else ([], [node[2]])


@st.composite
def cases(draw: st.DrawFn) -> tuple[Node, Style, list[tuple[dict[str, str], dict[str, Decimal]]]]:
    node = draw(expressions(3))
    style = Style(draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))
    text_names, number_names = _pairs(node)
    events = []
    for _ in range(draw(st.integers(1, 4))):
        attributes = draw(
            st.dictionaries(st.sampled_from(text_names) if text_names else names, texts, max_size=4)
        )
        metrics = draw(
            st.dictionaries(st.sampled_from(number_names) if number_names else names, numbers, max_size=4)
        )
        events.append((attributes, metrics))
    return node, style, events


@dataclass(frozen=True)
class Seen:
    attributes: Mapping[str, str]
    metrics: Mapping[str, Decimal]


@settings(max_examples=200, deadline=None)
@given(cases())
def test_compiled_filter_agrees_with_a_plain_interpreter(
    case: tuple[Node, Style, list[tuple[dict[str, str], dict[str, Decimal]]]],
) -> None:
    node, style, events = case
    text = write(node, style)
    compiled = compile_filter(text)
    recompiled = compile_filter(compiled.canonical)
    for attributes, metrics in events:
        expected = interpret(node, attributes, metrics)
        assert compiled.matches(Seen(attributes, metrics)) is expected, text
        assert recompiled.matches(Seen(attributes, metrics)) is expected, compiled.canonical
