"""The Aggregate column: what a rule measures per user, and how a measure is written as a value.

``count`` (the default) keeps the table's original meaning: Operator-C compares the number of events
and Operator-V the sum of MetricName. Any other aggregate reads only the events that carry what it
aggregates (the metric, or the attribute of ``distinct``), so Operator-C then counts those events and
an average is exactly their sum divided by their count, in the aggregator and over daily rollups alike.

Everything is exact ``Decimal``. An average is compared exactly (its sum against the target times
its count) and rounded half-even to :data:`AVERAGE_PLACES` decimal places only when it is written;
nothing rounded is ever carried into the next event.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from enum import StrEnum


class Aggregate(StrEnum):
    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    DISTINCT = "distinct"

    @property
    def on_metric(self) -> bool:
        return self in (Aggregate.SUM, Aggregate.AVG, Aggregate.MIN, Aggregate.MAX)

    @property
    def on_rollups(self) -> bool:
        """Whether daily rollups (a count and a sum per day) give this aggregate exactly over a window."""
        return self in (Aggregate.COUNT, Aggregate.SUM, Aggregate.AVG)

    @property
    def keeps_extremes(self) -> bool:
        return self in (Aggregate.MIN, Aggregate.MAX)


AGGREGATE_HELP = "use count, sum, avg, min, max (on MetricName) or distinct(attribute name)"
_WORDS = {
    "count": Aggregate.COUNT,
    "sum": Aggregate.SUM,
    "avg": Aggregate.AVG,
    "average": Aggregate.AVG,
    "min": Aggregate.MIN,
    "minimum": Aggregate.MIN,
    "max": Aggregate.MAX,
    "maximum": Aggregate.MAX,
}
_DISTINCT = re.compile(r"distinct\s*\(\s*(?P<name>.*?)\s*\)", re.IGNORECASE | re.DOTALL)


class AggregateError(ValueError):
    pass


def parse_aggregate(text: str) -> tuple[Aggregate, str | None]:
    """``(aggregate, attribute)`` from the cell; the attribute is set for ``distinct(name)`` only.
    An empty cell or ``na`` is ``count``."""
    raw = text.strip()
    if raw.lower() in ("", "na"):
        return Aggregate.COUNT, None
    word = _WORDS.get(raw.lower())
    if word is not None:
        return word, None
    found = _DISTINCT.fullmatch(raw)
    if found is not None:
        name = found.group("name")
        if not name:
            raise AggregateError("distinct needs an attribute name, as in distinct(product_id)")
        return Aggregate.DISTINCT, name
    if raw.lower() == "distinct":
        raise AggregateError("distinct needs an attribute name, as in distinct(product_id)")
    raise AggregateError(f'"{raw[:60]}" is not an aggregate; {AGGREGATE_HELP}')


MAX_DISTINCT = 1_000
"""Distinct values counted exactly per user and rule. Each is kept as an 8-byte digest (a 64-bit hash:
two values collide with a chance below 1 in 10^13 at this bound), so the counter item grows by at most
8 KB and stays far under DynamoDB's 400 KB with its lane marks and outbox. Past the bound the count
stops: the measure is reported as ``1000+`` and compares as more than 1000, which is exact for every
target up to 1000 (larger targets are refused when the table is read)."""
DISTINCT_DIGEST_BYTES = 8
BEYOND_DISTINCT = Decimal(MAX_DISTINCT) + Decimal("0.5")
"""What a full distinct set compares as: above every target the parser accepts, and equal to none."""

AVERAGE_PLACES = 6
_AVERAGE_QUANTUM = Decimal(1).scaleb(-AVERAGE_PLACES)
_PRECISION = 38
SUMS = Context(prec=_PRECISION, rounding=ROUND_HALF_EVEN, Emin=MIN_EMIN, Emax=MAX_EMAX)
"""Where every sum is added: 38 significant digits, as many as a target keeps, so a sum equal to a
target compares equal (Python's default context keeps 28, and rounded a 38-digit metric away from its
own target), and no exponent bound, so a tiny metric stays itself instead of flushing to zero."""


def distinct_digest(value: str) -> bytes:
    return hashlib.blake2b(value.encode(), digest_size=DISTINCT_DIGEST_BYTES).digest()


def mean(total: Decimal, count: int) -> Decimal | None:
    """``total / count`` rounded half-even to AVERAGE_PLACES places (to 38 significant digits when
    the value is too large for that); ``None`` with nothing to average."""
    if count <= 0:
        return None
    with localcontext() as context:
        context.prec = _PRECISION
        context.rounding = ROUND_HALF_EVEN
        exact = total / Decimal(count)
        try:
            return exact.quantize(_AVERAGE_QUANTUM)
        except InvalidOperation:
            return +exact


MAX_VALUE_TEXT = 40
"""Pinpoint's endpoint attribute values stop at 100 characters; plain digits stop here, and a larger
magnitude is written in exponent form (at most 38 digits), so no value is ever cut."""


def value_text(value: Decimal) -> str:
    """How a measure is written: plain digits, an average without trailing zeros (``412.5``), a sum
    with the places its inputs had (``412.50``).

    A ``min`` or ``max`` is a metric as it was sent, of any length and exponent: it is rounded to 38
    significant digits first (with no exponent bound, so ``1e-999999999`` stays itself), and spelled
    out in plain digits only when that form is short, never built first and measured after."""
    with localcontext(prec=_PRECISION, Emin=MIN_EMIN, Emax=MAX_EMAX, rounding=ROUND_HALF_EVEN):
        value = +value
    _, places, exponent = value.as_tuple()
    if isinstance(exponent, int) and (
        (exponent >= 0 and not value) or len(places) + abs(exponent) <= MAX_VALUE_TEXT
    ):
        text = format(value, "f")
        if len(text) <= MAX_VALUE_TEXT:
            return text
    digits, _, exponent_text = str(value).partition("E")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return f"{digits}E{exponent_text}" if exponent_text else digits


def average_text(value: Decimal) -> str:
    text = value_text(value)
    if "." in text and "E" not in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


VALUE_UPDATE_SECONDS = 15 * 60
"""At most one value update per user and rule in this many seconds. A change inside it is not lost:
it is held in the counter's outbox for the relay, due when the interval ends, and a later change
replaces it there, so the newest value is the one sent."""


def chosen_metric(metrics: Mapping[str, Decimal], metric_name: str | None) -> Decimal | None:
    """The value a rule aggregates: the named metric, or the event's only metric.

    With several metrics and no MetricName the choice would be a guess, so the event adds nothing
    (it still counts for a ``count`` rule) and the caller reports it as ambiguous.
    """
    if metric_name is not None:
        return metrics.get(metric_name)
    if len(metrics) == 1:
        return next(iter(metrics.values()))
    return None
