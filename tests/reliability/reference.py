"""What the engine must produce, worked out one event at a time with no code shared with ``pia``.

The reliability scenarios compare the engine's durable state and the actions Pinpoint received
against this model. It is deliberately naive: the rule table's words, Python's operators, a dict
of tallies. If the engine and this model disagree, one of them misread issue #2's semantics, and
this one is short enough to check by eye.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import Any
from zoneinfo import ZoneInfo

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "greater": operator.gt,
    "greater_or_equal": operator.ge,
    "smaller": operator.lt,
    "less_or_equal": operator.le,
    "equal": operator.eq,
    "not_equal": operator.ne,
}
BASE_MILLIS = 1_795_165_200_000
HOUR, DAY, EVER = "hour", "day", "ever"

SUMS = Context(prec=38, Emin=MIN_EMIN, Emax=MAX_EMAX)
"""The README's semantics: a sum keeps 38 significant digits, at any exponent (Python's default
context keeps 28 and turns 1e-999999999 into 0)."""


@dataclass(frozen=True)
class CapSpec:
    """A Cap cell as the model reads it: at most ``limit`` fires per ``span`` hours or calendar days
    in ``zone`` (windows opened by the first fire after the last one closed), or per user, ever."""

    limit: int
    unit: str
    span: int = 1

    def cell(self) -> str:
        return "once" if self.unit == EVER else f"{self.limit} per {self.span} {self.unit}s"

    def window(self, moment: int, zone: ZoneInfo) -> tuple[int, int | None]:
        local = datetime.fromtimestamp(moment, zone)
        if self.unit == EVER:
            return moment, None
        if self.unit == HOUR:
            start = int(local.replace(minute=0, second=0, microsecond=0).timestamp())
            return start, start + 3600 * self.span
        midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
        end = datetime.combine(midnight.date() + timedelta(days=self.span), midnight.time(), zone)
        return int(midnight.timestamp()), int(end.timestamp())


@dataclass(frozen=True)
class RuleSpec:
    """One row of the marketer's table, as the test writes it."""

    output: str
    event: str
    count: tuple[str, int] | None = None
    total: tuple[str, str] | None = None
    reset: bool = False
    attribute: tuple[str, str] | None = None
    metric: str | None = None
    cap: CapSpec | None = None

    def row(self) -> dict[str, str]:
        cap = {"Cap": self.cap.cell()} if self.cap else {}
        return cap | {
            "RuleType": "aggregator",
            "EventName": self.event,
            "AttributeName": self.attribute[0] if self.attribute else "na",
            "AttributeValue": self.attribute[1] if self.attribute else "999",
            "Operator-C": self.count[0] if self.count else "na",
            "Target-C": str(self.count[1]) if self.count else "999",
            "Operator-V": self.total[0] if self.total else "na",
            "Target-V": self.total[1] if self.total else "999",
            "ResetWhenReachTarget": "yes" if self.reset else "no",
            "StartDate": "9999-99-99",
            "FinishDate": "9999-99-99",
            "MetricName": self.metric or "na",
            "OutputName": self.output,
        }

    def matches(self, event: StreamEvent) -> bool:
        if event.user is None or event.event_type != self.event:
            return False
        return self.attribute is None or event.attributes.get(self.attribute[0]) == self.attribute[1]

    def amount(self, event: StreamEvent) -> Decimal:
        """The named metric (0 when absent), or the only metric, or 0 when there are several."""
        if self.metric is not None:
            return event.metrics.get(self.metric, Decimal(0))
        if len(event.metrics) == 1:
            return next(iter(event.metrics.values()))
        return Decimal(0)

    def settled(self, tally: Tally) -> bool:
        """Nothing further can change this user's output, so the engine stops counting: a ``reset =
        no`` attribute already ready (it is sticky), or a count that has passed a smaller / at most /
        equal target (a count only grows until a crossing)."""
        if tally.ready and not self.reset:
            return True
        if self.cap is not None and self.cap.unit == EVER and tally.fired >= self.cap.limit:
            return True
        if self.count is None:
            return False
        op, target = self.count
        return (op == "smaller" and tally.count >= target) or (
            op in ("less_or_equal", "equal") and tally.count > target
        )

    def met(self, count: int, total: Decimal) -> bool:
        if self.count and not OPERATORS[self.count[0]](count, self.count[1]):
            return False
        return not (self.total and not OPERATORS[self.total[0]](total, Decimal(self.total[1])))


@dataclass(frozen=True)
class StreamEvent:
    """A Pinpoint event-stream record as an app would produce it."""

    user: str | None
    event_type: str
    n: int
    attributes: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Decimal] = field(default_factory=dict)
    second: int | None = None
    """Seconds after BASE_MILLIS the app stamps the event (default: ``n``)."""

    @property
    def endpoint(self) -> str:
        return f"ep-{self.user}"

    @property
    def millis(self) -> int:
        return BASE_MILLIS + (self.n if self.second is None else self.second) * 1000

    def document(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "event_timestamp": self.millis,
            "arrival_timestamp": self.millis + 150,
            "client": {"client_id": self.endpoint},
            "attributes": dict(self.attributes),
            "metrics": {name: float(value) for name, value in self.metrics.items()},
            "endpoint": {"User": {"UserId": self.user} if self.user else {}},
        }


@dataclass
class Tally:
    count: int = 0
    total: Decimal = Decimal(0)
    ready: bool = False
    fired: int = 0
    crossings: list[tuple[str, int]] = field(default_factory=list)
    capped: int = 0
    window: tuple[int, int | None] | None = None
    window_fires: int = 0


class ReferenceModel:
    """Tallies per (output name, user); ``crossings`` are the stream positions that met the rule."""

    def __init__(self, zone: ZoneInfo | None = None) -> None:
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.zone = zone or ZoneInfo("UTC")

    def _cap_allows(self, cap: CapSpec | None, tally: Tally, event: StreamEvent) -> bool:
        if cap is None:
            return True
        moment = event.millis // 1000
        if tally.window is not None and (tally.window[1] is None or moment < tally.window[1]):
            if tally.window_fires >= cap.limit:
                return False
            tally.window_fires += 1
            return True
        tally.window, tally.window_fires = cap.window(moment, self.zone), 1
        return True

    def feed(self, rules: Iterable[RuleSpec], lane: str, sequence: int, event: StreamEvent) -> None:
        for rule in rules:
            if not rule.matches(event):
                continue
            assert event.user is not None
            tally = self.tallies.get((rule.output, event.user), Tally())
            if rule.settled(tally):
                continue
            self.tallies[(rule.output, event.user)] = tally
            tally.count += 1
            if rule.total:
                # A rule without a value condition does not sum (its sum stays 0, as documented).
                tally.total = SUMS.add(tally.total, rule.amount(event))
            if not rule.met(tally.count, tally.total):
                continue
            if rule.reset:
                tally.count, tally.total = 0, Decimal(0)
                if not self._cap_allows(rule.cap, tally, event):
                    tally.capped += 1
                    continue
                tally.fired += 1
                tally.crossings.append((lane, sequence))
            elif not tally.ready:
                tally.ready = True
                tally.fired += 1
                tally.crossings.append((lane, sequence))
