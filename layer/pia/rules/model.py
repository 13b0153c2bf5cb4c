"""The compiled rule: what every function reads from the live ruleset (the aggregator, the evaluator,
the backfill), built by the rule table's parser (:mod:`pia.rules.table`) or read back from a
published ruleset (:meth:`Rule.from_json`). The parser is not imported here: the aggregator's cold
start pays only for the model (``tests/unit/core/test_pure_imports.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pia.rules.aggregates import (
    Aggregate,
    chosen_metric,
    parse_aggregate,
)
from pia.rules.caps import Cap, parse_cap

if TYPE_CHECKING:
    from pia.rules.filters import Filter, Observed

OUTPUT_PREFIX = "trk_"


class RuleType(StrEnum):
    AGGREGATOR = "aggregator"
    DATE = "date"


class Comparison(StrEnum):
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EQ = "="
    NE = "!="


@dataclass(frozen=True)
class Condition:
    op: Comparison
    target: Decimal

    def holds(self, value: Decimal) -> bool:
        match self.op:
            case Comparison.GT:
                return value > self.target
            case Comparison.GE:
                return value >= self.target
            case Comparison.LT:
                return value < self.target
            case Comparison.LE:
                return value <= self.target
            case Comparison.EQ:
                return value == self.target
            case Comparison.NE:
                return value != self.target

    def holds_for_mean(self, total: Decimal, count: int) -> bool:
        """Whether ``total / count`` meets the condition, decided exactly (``total`` against
        ``target * count``, which no rounding touches): a mean of 10.0000001 is above 10 even though
        it is written as 10 to six places."""
        if count <= 0:
            return False
        with localcontext() as context:
            context.prec = EXACT_PRODUCT_DIGITS
            return Condition(self.op, self.target * count).holds(total)


EXACT_PRODUCT_DIGITS = 80
"""Enough for any target (38 significant digits) times any count (below 2**63) without rounding."""


_SERIES_SEPARATORS = re.compile(r"([\\|=#*])")


def _series_part(name: str) -> str:
    return _SERIES_SEPARATORS.sub(r"\\\1", name)


@dataclass(frozen=True)
class Rule:
    """One live row of the table, compiled.

    ``rule_id`` hashes every cell that changes what is counted, when it fires or what it writes, so
    editing a threshold or an output starts a new counter rather than silently reinterpreting the old
    one, and two rows that differ in one cell never share a counter or an action id. The default
    output is implied by the other cells, so it is left out of the hash: a rule that never named an
    output kept its id when outputs joined the hash.
    """

    rule_id: str
    row: int
    rule_type: RuleType
    event_name: str
    attribute_name: str | None
    attribute_value: str | None
    count_condition: Condition | None
    sum_condition: Condition | None
    reset: bool
    start_date: date | None
    finish_date: date | None
    window_days: int | None
    metric_name: str | None
    output_name: str
    filter: Filter | None = None
    absent: bool = False
    """An absence rule (Operator-C ``absent``): met by a user seen before with no matching event in
    the Window. It counts events like any count rule, so it shares the series of the same events."""
    aggregate: Aggregate = Aggregate.COUNT
    distinct_attribute: str | None = None
    writes_value: bool = False
    """``Output = value``: the rule writes its measure as the attribute's value, not ``ready``."""

    @property
    def aggregate_text(self) -> str:
        if self.aggregate is Aggregate.DISTINCT:
            return f"distinct({self.distinct_attribute})"
        return self.aggregate.value

    cap: Cap | None = None
    """How often a reset rule may fire per user (:mod:`pia.rules.caps`); ``None``: every crossing."""

    @property
    def series(self) -> str:
        """The time series a date rule reads: the event, narrowed by its attribute filter and its
        Filter, and for a sum rule the metric it sums (``*``: the event's only metric), since rollups
        of different metrics differ. Each name is escaped, so the key names one series only: a filter
        ``tag = vip#price`` and a filter ``tag = vip`` summing ``price`` read different rollups. Only a
        name holding a backslash, ``|``, ``=``, ``#`` or ``*`` has a key that differs from the
        unescaped one. The Filter enters by its digest (hex, after a ``|`` with no ``=``, so it is
        never read as an attribute filter), which keeps the key small. A ``sum`` or ``avg`` rule reads
        only the events that carry its metric, so its series ends in ``#measured``."""
        base = _series_part(self.event_name)
        if self.attribute_name is not None:
            base = f"{base}|{_series_part(self.attribute_name)}={_series_part(self.attribute_value or '')}"
        if self.filter is not None:
            base = f"{base}|filter:{self.filter.digest}"
        if self.aggregate.on_metric:
            return f"{base}#{_series_part(self.metric_name) if self.metric_name else '*'}#measured"
        if self.sum_condition is None:
            return base
        return f"{base}#{_series_part(self.metric_name) if self.metric_name else '*'}"

    @property
    def needs_sum(self) -> bool:
        return self.sum_condition is not None or self.aggregate.on_metric

    def matches(self, event: Observed) -> bool:
        """Whether an event of the rule's EventName counts: AttributeName/AttributeValue and the
        Filter, when given, must both hold, and an aggregate other than count reads only the events
        that carry its metric or attribute."""
        if (
            self.attribute_name is not None
            and event.attributes.get(self.attribute_name) != self.attribute_value
        ):
            return False
        if self.aggregate is not Aggregate.COUNT and not self._carries_aggregated(event):
            return False
        return self.filter is None or self.filter.matches(event)

    def _carries_aggregated(self, event: Observed) -> bool:
        if self.distinct_attribute is not None:
            return self.distinct_attribute in event.attributes
        return chosen_metric(event.metrics, self.metric_name) is not None

    def is_met(self, count: int | Decimal, total: Decimal, measure: Decimal | None = None) -> bool:
        """Operator-C on the count; Operator-V on the sum for ``count`` and ``sum`` rules, on the exact
        mean for ``avg`` (from count and sum, so daily rollups give it too), and on ``measure`` (the
        minimum, maximum or distinct count) for the others: ``None`` (no value yet) meets no
        condition."""
        if self.count_condition is not None and not self.count_condition.holds(Decimal(count)):
            return False
        if self.sum_condition is None:
            return True
        if self.aggregate is Aggregate.AVG:
            return self.sum_condition.holds_for_mean(total, int(count))
        value = total if self.aggregate in (Aggregate.COUNT, Aggregate.SUM) else measure
        return value is not None and self.sum_condition.holds(value)

    def window_for(self, today: date) -> tuple[date, date] | None:
        """The inclusive calendar-date span a date rule covers on ``today``. An absence rule's span runs
        on without end: an event stamped ahead of the clock still says the user acted, and must not
        let them enter the audience until its own day has slid out of the window too."""
        if self.window_days is not None:
            first = today - timedelta(days=self.window_days - 1)
            return (first, date.max) if self.absent else (first, today)
        if self.start_date is not None and self.finish_date is not None:
            return self.start_date, self.finish_date
        return None

    def to_json(self) -> dict[str, Any]:
        """A rule without a Filter has no ``filter`` key (nor, without a Cap, a ``cap`` key, nor, with
        the default Aggregate and Output, ``aggregate`` or ``output`` keys), so rulesets published
        before those columns existed keep their content hash and are not republished."""

        def cond(c: Condition | None) -> list[str] | None:
            return None if c is None else [c.op.value, str(c.target)]

        body = {
            "rule_id": self.rule_id,
            "row": self.row,
            "rule_type": self.rule_type.value,
            "event_name": self.event_name,
            "attribute_name": self.attribute_name,
            "attribute_value": self.attribute_value,
            "count": cond(self.count_condition),
            "sum": cond(self.sum_condition),
            "reset": self.reset,
            "start_date": self.start_date.isoformat() if self.start_date else None,
            "finish_date": self.finish_date.isoformat() if self.finish_date else None,
            "window_days": self.window_days,
            "metric_name": self.metric_name,
            "output_name": self.output_name,
        }
        if self.filter is not None:
            body["filter"] = self.filter.source
        if self.aggregate is not Aggregate.COUNT:
            body["aggregate"] = self.aggregate_text
        if self.writes_value:
            body["output"] = "value"
        if self.absent:
            body["absent"] = True
        if self.cap is not None:
            body["cap"] = self.cap.source
        return body

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Rule:
        def cond(raw: list[str] | None) -> Condition | None:
            return None if raw is None else Condition(Comparison(raw[0]), Decimal(raw[1]))

        aggregate, distinct = parse_aggregate(data.get("aggregate") or "")
        return Rule(
            rule_id=data["rule_id"],
            row=int(data["row"]),
            rule_type=RuleType(data["rule_type"]),
            event_name=data["event_name"],
            attribute_name=data["attribute_name"],
            attribute_value=data["attribute_value"],
            count_condition=cond(data["count"]),
            sum_condition=cond(data["sum"]),
            reset=bool(data["reset"]),
            start_date=date.fromisoformat(data["start_date"]) if data["start_date"] else None,
            finish_date=date.fromisoformat(data["finish_date"]) if data["finish_date"] else None,
            window_days=data.get("window_days"),
            metric_name=data.get("metric_name"),
            output_name=data["output_name"],
            filter=compiled_filter(data["filter"]) if data.get("filter") else None,
            aggregate=aggregate,
            distinct_attribute=distinct,
            writes_value=data.get("output") == "value",
            absent=bool(data.get("absent", False)),
            cap=parse_cap(data["cap"]) if data.get("cap") else None,
        )


def compiled_filter(text: str) -> Filter:
    """The filter language is imported by the first ruleset that has a Filter, not at cold start:
    a stack without filtered rules never loads it (``tests/unit/core/test_pure_imports.py``)."""
    from pia.rules.filters import compile_filter  # noqa: PLC0415

    return compile_filter(text)
