"""The Filter column: a small expression over an event's attributes and metrics.

A filter is parsed once, when a table is validated or a ruleset is loaded, into a tree of closures;
the hot path only calls them. The grammar, in full (keywords in any letter case; names and text
compared exactly, character for character, with no case folding or Unicode normalisation)::

    filter    = or
    or        = and { "or" and }
    and       = not { "and" not }
    not       = "not" not | "(" or ")" | condition
    condition = name "exists"
              | name ( "=" | "!=" ) value
              | name "in" "(" value { "," value } ")"
              | name ( "contains" | "starts with" | "ends with" ) text
              | name ( "<" | "<=" | ">" | ">=" ) number
    value     = text | number
    name      = bare | "`" { character, with `` for a backtick } "`"
    text      = '"' { character, with "" for a quote } '"' | "'" { character, with '' } "'"
    number    = [ "+" | "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ]

A bare name is a run of letters, digits, combining marks and ``_ . - $ @ : /`` that is not a
keyword (``and or not in contains starts ends with exists``); any other name, such as one with a
space, is written in backticks. The value decides what a name refers to: text compares an event
attribute (whose values are text), a number compares a metric (exactly, as a ``Decimal``), and
``exists`` holds when either has the name. A condition on a name the event does not have is false,
``!=`` included: ``not plan = "gold"`` holds for an event without ``plan``, ``plan != "gold"`` does
not.

Bounds keep a table cell from costing the hot path or the ruleset item more than a rule is worth:
:data:`MAX_LENGTH` characters, :data:`MAX_CONDITIONS` conditions (Segment allows 50 expressions in an
audience), :data:`MAX_DEPTH` levels of ``not`` and parentheses (the parser recurses once per level),
:data:`MAX_IN_VALUES` values in a list, and numbers of at most :data:`MAX_DIGITS` digits with an
exponent within :data:`MAX_EXPONENT` (a metric is a double, so no comparison needs more, and
``1e5000000`` is refused instead of expanded).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import NoReturn, Protocol

from pia.core.limits import MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTE_VALUE

MAX_LENGTH = 1000
MAX_CONDITIONS = 50
MAX_DEPTH = 10
MAX_IN_VALUES = 100
MAX_DIGITS = 40
MAX_EXPONENT = 400
COMPILED_CACHE = 4096

KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "starts", "ends", "with", "exists"})
_BARE_EXTRA = frozenset("_.-$@:/")
_NUMBER = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?")
_SYMBOLS = ("<=", ">=", "!=", "==", "=", "<", ">")
_CURLY_QUOTES = frozenset("\u201c\u201d\u2018\u2019\u00ab\u00bb")


class FilterError(ValueError):
    """A filter that cannot be compiled; ``position`` counts characters from 1, as a marketer would."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"position {position}: {message}")
        self.position = position
        self.message = message


class TextOp(StrEnum):
    EQ = "="
    NE = "!="
    IN = "in"
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"


class NumberOp(StrEnum):
    EQ = "="
    NE = "!="
    IN = "in"
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True)
class Exists:
    name: str


@dataclass(frozen=True)
class TextTest:
    """A condition on an attribute."""

    name: str
    op: TextOp
    values: tuple[str, ...]


@dataclass(frozen=True)
class NumberTest:
    """A condition on a metric."""

    name: str
    op: NumberOp
    values: tuple[Decimal, ...]


@dataclass(frozen=True)
class Not:
    operand: Expression


@dataclass(frozen=True)
class AllOf:
    operands: tuple[Expression, ...]


@dataclass(frozen=True)
class AnyOf:
    operands: tuple[Expression, ...]


Expression = Exists | TextTest | NumberTest | Not | AllOf | AnyOf


class Observed(Protocol):
    """What a filter reads of an event."""

    @property
    def attributes(self) -> Mapping[str, str]: ...

    @property
    def metrics(self) -> Mapping[str, Decimal]: ...


Test = Callable[[Mapping[str, str], Mapping[str, Decimal]], bool]


@dataclass(frozen=True)
class Filter:
    """A compiled filter. Two filters that differ only in spacing, keyword case, quoting or the
    spelling of a number (``10`` and ``10.0``) have the same ``canonical`` text, so the rule keeps its
    id and its counters."""

    source: str
    expression: Expression
    canonical: str
    test: Test = field(compare=False, repr=False)

    def matches(self, event: Observed) -> bool:
        return self.test(event.attributes, event.metrics)

    @property
    def digest(self) -> str:
        """A short, fixed-size stand-in for the canonical text, for keys that must stay small."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:16]


@lru_cache(maxsize=COMPILED_CACHE)
def compile_filter(source: str) -> Filter:
    """Parse and compile ``source``; raises :class:`FilterError` naming the position at fault.

    Filters are immutable, so one compiled filter serves every load of a ruleset that still holds
    it: the aggregator re-reads the ruleset every minute, and a large table's filters would
    otherwise be parsed again each time."""
    text = source.strip()
    if len(text) > MAX_LENGTH:
        raise FilterError(
            MAX_LENGTH + 1, f"a filter is at most {MAX_LENGTH} characters; this one has {len(text)}"
        )
    if not text:
        raise FilterError(1, 'empty; write a condition such as plan = "gold"')
    expression = _Parser(text).parse()
    return Filter(text, expression, render(expression), _compile(expression))


def _is_bare_char(char: str) -> bool:
    return char in _BARE_EXTRA or unicodedata.category(char)[0] in "LMN"


def _describe(char: str) -> str:
    if char.isprintable() and not char.isspace():
        return f'"{char}"'
    return f"U+{ord(char):04X}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.conditions = 0

    def parse(self) -> Expression:
        expression = self._or(0)
        self._skip()
        if self.pos < len(self.text):
            if self.text[self.pos] == ")":
                self._fail("this ) closes no (")
            self._fail(f"expected and, or, or the end of the filter before {self._shown_here()}")
        return expression

    def _fail(self, message: str, at: int | None = None) -> NoReturn:
        raise FilterError((self.pos if at is None else at) + 1, message)

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _shown_here(self) -> str:
        if self.pos >= len(self.text):
            return "the end"
        if _is_bare_char(self.text[self.pos]):
            return f'"{self._peek_word()}"'
        return _describe(self.text[self.pos])

    def _peek_word(self) -> str:
        end = self.pos
        while end < len(self.text) and _is_bare_char(self.text[end]):
            end += 1
        return self.text[self.pos : end]

    def _keyword(self, word: str) -> bool:
        """Consume ``word`` if it is next, as a whole word, in any case."""
        self._skip()
        found = self._peek_word()
        if found.lower() == word:
            self.pos += len(found)
            return True
        return False

    def _or(self, depth: int) -> Expression:
        operands = [self._and(depth)]
        while self._keyword("or"):
            operands.append(self._and(depth))
        return operands[0] if len(operands) == 1 else AnyOf(_flatten(AnyOf, operands))

    def _and(self, depth: int) -> Expression:
        operands = [self._not(depth)]
        while self._keyword("and"):
            operands.append(self._not(depth))
        return operands[0] if len(operands) == 1 else AllOf(_flatten(AllOf, operands))

    def _not(self, depth: int) -> Expression:
        self._skip()
        if depth >= MAX_DEPTH:
            self._fail(f"nested deeper than {MAX_DEPTH} levels of not and parentheses")
        if self._keyword("not"):
            return Not(self._not(depth + 1))
        if self.pos < len(self.text) and self.text[self.pos] == "(":
            opened = self.pos
            self.pos += 1
            inner = self._or(depth + 1)
            self._skip()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                self._fail(f"expected ) to close the ( at position {opened + 1}")
            self.pos += 1
            return inner
        return self._condition()

    def _condition(self) -> Expression:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            self._fail(f"more than {MAX_CONDITIONS} conditions")
        name_at = self.pos
        name = self._name()
        self._skip()
        op_at = self.pos
        for symbol in _SYMBOLS:
            if self.text.startswith(symbol, self.pos):
                self.pos += len(symbol)
                return self._symbol_condition(name, name_at, "=" if symbol == "==" else symbol)
        word = self._peek_word().lower()
        if word == "exists":
            self.pos += len(word)
            return Exists(name)
        if word == "in":
            self.pos += len(word)
            return self._in_list(name, name_at)
        if word == "contains":
            self.pos += len(word)
            return self._text_condition(name, name_at, TextOp.CONTAINS)
        if word in ("starts", "ends"):
            self.pos += len(word)
            if not self._keyword("with"):
                self._fail(f'expected "with" after "{word}"')
            op = TextOp.STARTS_WITH if word == "starts" else TextOp.ENDS_WITH
            return self._text_condition(name, name_at, op)
        if word == "not":
            self._fail('write "not" before the condition, for example not plan in ("gold", "silver")')
        shown = "the end of the filter" if self.pos >= len(self.text) else self._shown_here()
        self._fail(
            f"expected an operator after the name {render_name(name)} "
            f"(= != in contains starts with ends with < <= > >= exists), found {shown}",
            op_at,
        )

    def _name(self) -> str:
        if self.pos >= len(self.text):
            self._fail("expected a condition, but the filter ends")
        char = self.text[self.pos]
        if char == "`":
            name = self._quoted("`")
            if not name:
                self._fail("empty name", self.pos - 2)
            return name
        if char in "\"'" or char in _CURLY_QUOTES:
            self._fail(
                "expected an attribute or metric name; quotes are for values, so write a name in "
                "backticks, for example `first name`"
            )
        word = self._peek_word()
        if not word:
            self._fail(f"expected an attribute or metric name, found {_describe(char)}")
        if word.lower() in KEYWORDS:
            self._fail(f'"{word}" is a keyword; write a name spelled like it in backticks: `{word}`')
        self.pos += len(word)
        return word

    def _quoted(self, quote: str) -> str:
        """Read a quoted run starting at the opening ``quote``; a doubled quote stands for itself."""
        opened = self.pos
        self.pos += 1
        parts: list[str] = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                kind = "name" if quote == "`" else "text"
                self._fail(f"the {kind} opened here with {quote} has no closing {quote}", opened)
            parts.append(self.text[self.pos : end])
            self.pos = end + 1
            if self.text.startswith(quote, self.pos):
                parts.append(quote)
                self.pos += 1
                continue
            return "".join(parts)

    def _value(self, after: str) -> tuple[int, str | Decimal]:
        self._skip()
        at = self.pos
        if self.pos >= len(self.text):
            self._fail(f'expected a value after "{after}", but the filter ends')
        char = self.text[self.pos]
        if char in "\"'":
            return at, self._quoted(char)
        if char in _CURLY_QUOTES:
            self._fail(f"{_describe(char)} is a typographic quote; write text in straight quotes \" or '")
        match = _NUMBER.match(self.text, self.pos)
        if match and not (match.end() < len(self.text) and _is_bare_char(self.text[match.end()])):
            return at, self._number(match)
        word = self._peek_word()
        if word:
            self._fail(f'{word} is not a number; write text in quotes: "{word}"')
        self._fail(f'expected a value after "{after}", found {_describe(char)}')

    def _number(self, match: re.Match[str]) -> Decimal:
        digits = len(match.group(1).replace(".", "").lstrip("0"))
        if digits > MAX_DIGITS:
            self._fail(f"a number has at most {MAX_DIGITS} digits")
        exponent = match.group(2)
        if exponent is not None and len(exponent.lstrip("+-").lstrip("0")) > 3:
            self._fail(f"a number's exponent is within -{MAX_EXPONENT}..{MAX_EXPONENT}")
        value = Decimal(match.group(0))
        if not value.is_zero() and not -MAX_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
            self._fail(f"a number's exponent is within -{MAX_EXPONENT}..{MAX_EXPONENT}")
        self.pos = match.end()
        return value

    def _check_attribute(self, name: str, name_at: int) -> None:
        if len(name) > MAX_ATTRIBUTE_NAME:
            self._fail(
                f"attribute names are at most {MAX_ATTRIBUTE_NAME} characters (longer ones are dropped "
                "from events), so this condition could never hold",
                name_at,
            )

    def _check_text(self, value: str, at: int) -> None:
        if len(value) > MAX_ATTRIBUTE_VALUE:
            self._fail(
                f"text is at most {MAX_ATTRIBUTE_VALUE} characters (longer attribute values are dropped "
                "from events), so this condition could never hold",
                at,
            )

    def _symbol_condition(self, name: str, name_at: int, symbol: str) -> Expression:
        at, value = self._value(symbol)
        if isinstance(value, str):
            if symbol not in ("=", "!="):
                self._fail(f"{symbol} compares numbers (metrics); write the number without quotes", at)
            self._check_attribute(name, name_at)
            self._check_text(value, at)
            return TextTest(name, TextOp(symbol), (value,))
        return NumberTest(name, NumberOp(symbol), (value,))

    def _text_condition(self, name: str, name_at: int, op: TextOp) -> Expression:
        at, value = self._value(op.value)
        if not isinstance(value, str):
            self._fail(f'{op.value} compares text (attributes); write the text in quotes: "{value}"', at)
        self._check_attribute(name, name_at)
        self._check_text(value, at)
        return TextTest(name, op, (value,))

    def _in_list(self, name: str, name_at: int) -> Expression:
        self._skip()
        if not self.text.startswith("(", self.pos):
            self._fail('expected ( after "in", for example plan in ("gold", "silver")')
        opened = self.pos
        self.pos += 1
        texts: list[str] = []
        numbers: list[Decimal] = []
        while True:
            at, value = self._value("(" if not texts and not numbers else ",")
            if isinstance(value, str):
                if numbers:
                    self._fail("a list holds either text or numbers, not both", at)
                self._check_text(value, at)
                texts.append(value)
            else:
                if texts:
                    self._fail("a list holds either text or numbers, not both", at)
                numbers.append(value)
            if len(texts) + len(numbers) > MAX_IN_VALUES:
                self._fail(f"a list holds at most {MAX_IN_VALUES} values", at)
            self._skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith(")", self.pos):
                self.pos += 1
                break
            self._fail(f"expected , or ) in the list opened at position {opened + 1}")
        if texts:
            self._check_attribute(name, name_at)
            return TextTest(name, TextOp.IN, tuple(sorted(set(texts))))
        return NumberTest(name, NumberOp.IN, tuple(sorted(set(numbers))))


def exact_texts(expression: Expression) -> Iterator[tuple[str, str]]:
    """(attribute, text) for each exact comparison (``=``, ``!=``, ``in``): the values a typo makes
    match nothing, which the poller checks against the values recently seen."""
    match expression:
        case AnyOf(operands) | AllOf(operands):
            for operand in operands:
                yield from exact_texts(operand)
        case Not(operand):
            yield from exact_texts(operand)
        case TextTest(name, op, values) if op in (TextOp.EQ, TextOp.NE, TextOp.IN):
            for value in values:
                yield name, value


def _flatten(kind: type[AllOf] | type[AnyOf], operands: list[Expression]) -> tuple[Expression, ...]:
    flat: list[Expression] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return tuple(flat)


def render_name(name: str) -> str:
    if name and name.lower() not in KEYWORDS and all(_is_bare_char(c) for c in name):
        return name
    return "`" + name.replace("`", "``") + "`"


def _render_text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _render_number(value: Decimal) -> str:
    """``10``, ``10.0`` and ``1e1`` all render ``10``; only far-off magnitudes keep an exponent, among
    them every one that would need more digits than a number may have (``1e40`` stays ``1E+40``)."""
    if value.is_zero():
        return "0"
    normal = value.normalize()
    return format(normal, "f") if -20 <= normal.adjusted() < MAX_DIGITS else str(normal)


def render(expression: Expression, outer: int = 0) -> str:
    """The canonical text of an expression: it parses back to the same expression."""
    match expression:
        case AnyOf(operands):
            text, precedence = " or ".join(render(o, 1) for o in operands), 1
        case AllOf(operands):
            text, precedence = " and ".join(render(o, 2) for o in operands), 2
        case Not(operand):
            text, precedence = "not " + render(operand, 3), 3
        case Exists(name):
            return f"{render_name(name)} exists"
        case TextTest(name, op, values):
            shown = [_render_text(v) for v in values]
            return _render_condition(render_name(name), op.value, shown)
        case NumberTest(name, op, values):
            return _render_condition(render_name(name), op.value, [_render_number(v) for v in values])
    return f"({text})" if precedence < outer else text


def _render_condition(name: str, op: str, values: list[str]) -> str:
    if op == "in":
        return f"{name} in ({', '.join(values)})"
    return f"{name} {op} {values[0]}"


def _compile(expression: Expression) -> Test:
    match expression:
        case AnyOf(operands):
            return _any_of(tuple(_compile(o) for o in operands))
        case AllOf(operands):
            return _all_of(tuple(_compile(o) for o in operands))
        case Not(operand):
            inner = _compile(operand)
            return lambda a, m: not inner(a, m)
        case Exists(name):
            return lambda a, m: name in a or name in m
        case TextTest(name, op, values):
            return _text_test(name, op, values)
        case NumberTest(name, op, values):
            return _number_test(name, op, values)


def _all_of(parts: tuple[Test, ...]) -> Test:
    """A plain loop: ``all()`` over a generator costs a generator per event, per rule."""

    def test(a: Mapping[str, str], m: Mapping[str, Decimal]) -> bool:
        for part in parts:  # noqa: SIM110
            if not part(a, m):
                return False
        return True

    return test


def _any_of(parts: tuple[Test, ...]) -> Test:
    def test(a: Mapping[str, str], m: Mapping[str, Decimal]) -> bool:
        for part in parts:  # noqa: SIM110
            if part(a, m):
                return True
        return False

    return test


def _text_test(name: str, op: TextOp, values: tuple[str, ...]) -> Test:
    """Each operator gets its own closure, so matching an event is one lookup and one comparison."""
    value = values[0]
    match op:
        case TextOp.EQ:
            return lambda a, m: a.get(name) == value
        case TextOp.NE:
            return lambda a, m: (found := a.get(name)) is not None and found != value
        case TextOp.IN:
            choices = frozenset(values)
            return lambda a, m: a.get(name) in choices
        case TextOp.CONTAINS:
            return lambda a, m: (found := a.get(name)) is not None and value in found
        case TextOp.STARTS_WITH:
            return lambda a, m: (found := a.get(name)) is not None and found.startswith(value)
        case TextOp.ENDS_WITH:
            return lambda a, m: (found := a.get(name)) is not None and found.endswith(value)


def _number_test(name: str, op: NumberOp, values: tuple[Decimal, ...]) -> Test:
    """Decimal comparisons are exact whatever the context precision: ``0.1`` never equals a double's
    ``0.1000000000000000055...``, and a metric sent as ``0.1`` is compared as written."""
    value = values[0]
    match op:
        case NumberOp.EQ:
            return lambda a, m: m.get(name) == value
        case NumberOp.NE:
            return lambda a, m: (found := m.get(name)) is not None and found != value
        case NumberOp.IN:
            choices = frozenset(values)
            return lambda a, m: m.get(name) in choices
        case NumberOp.LT:
            return lambda a, m: (found := m.get(name)) is not None and found < value
        case NumberOp.LE:
            return lambda a, m: (found := m.get(name)) is not None and found <= value
        case NumberOp.GT:
            return lambda a, m: (found := m.get(name)) is not None and found > value
        case NumberOp.GE:
            return lambda a, m: (found := m.get(name)) is not None and found >= value
