"""Vectorized evaluation of date and rolling-window rules over daily rollups, with pandas.

Only the evaluator imports this module: the aggregator must start fast and never loads pandas. The
semantics are those of :func:`pia.timeseries.rollups.is_met` and
:func:`pia.timeseries.rollups.next_value`, written here as boolean masks over all users at once; a
test holds the two implementations to the same answers.

Counts are compared as integers against an equivalent integral threshold, and sums as exact
``Decimal`` objects, so no target is ever rounded through a float.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import pandas as pd

from pia.core.actions import NOT_READY, READY
from pia.rules.aggregates import SUMS, Aggregate
from pia.rules.model import Comparison, Condition, Rule
from pia.timeseries.rollups import ZERO, SeriesRollup

_COMPARE: dict[Comparison, Callable[[Any, Any], Any]] = {
    Comparison.GT: operator.gt,
    Comparison.GE: operator.ge,
    Comparison.LT: operator.lt,
    Comparison.LE: operator.le,
    Comparison.EQ: operator.eq,
    Comparison.NE: operator.ne,
}


@dataclass(frozen=True)
class RollupFrame:
    """A series' rollups as columns: one row per (user, day) with data, and the users in order."""

    days: pd.DataFrame
    users: pd.Index
    rollups: tuple[SeriesRollup, ...]

    def sent(self, rule_id: str) -> pd.Series:
        return pd.Series([r.sent.get(rule_id) for r in self.rollups], index=self.users, dtype=object)


def rollup_frame(rollups: Sequence[SeriesRollup]) -> RollupFrame:
    users: list[str] = []
    days: list[int] = []
    counts: list[int] = []
    totals: list[Decimal] = []
    for rollup in rollups:
        for part in (rollup.days, rollup.backfill):
            for day, value in part.items():
                users.append(rollup.user_id)
                days.append(day.toordinal())
                counts.append(value.count)
                totals.append(value.total)
    frame = pd.DataFrame(
        {
            "user": pd.Series(users, dtype=object),
            "day": np.asarray(days, dtype=np.int64),
            "count": np.asarray(counts, dtype=np.int64),
            "total": pd.Series(totals, dtype=object),
        }
    )
    index = pd.Index([r.user_id for r in rollups], name="user", dtype=object)
    return RollupFrame(frame, index, tuple(rollups))


COUNT_BEYOND = Decimal(2**63)
"""Further than any int64 count: a target past it compares like this bound, whatever its size, and is
never expanded into an integer of its own size (``1e5000000`` took longer than a function timeout)."""


def _count_mask(count: pd.Series, condition: Condition) -> pd.Series:
    """``count <op> target`` for integer counts, through the integral threshold it is equivalent to."""
    target = min(max(condition.target, -COUNT_BEYOND), COUNT_BEYOND)
    floor, ceil = math.floor(target), math.ceil(target)
    match condition.op:
        case Comparison.GT:
            return count > floor
        case Comparison.GE:
            return count >= ceil
        case Comparison.LT:
            return count < ceil
        case Comparison.LE:
            return count <= floor
        case Comparison.EQ:
            return count == floor if floor == ceil else pd.Series(False, index=count.index)
        case Comparison.NE:
            return count != floor if floor == ceil else pd.Series(True, index=count.index)


def _sum_mask(total: pd.Series, condition: Condition) -> pd.Series:
    return pd.Series(_COMPARE[condition.op](total, condition.target), index=total.index, dtype=bool)


def _value_mask(rule: Rule, totals: pd.DataFrame, condition: Condition) -> pd.Series:
    """Operator-V over the window: on the sum, or for an ``avg`` rule on the exact mean."""
    if rule.aggregate is not Aggregate.AVG:
        return _sum_mask(totals["total"], condition)
    held = [
        condition.holds_for_mean(total, int(count))
        for count, total in zip(totals["count"], totals["total"], strict=True)
    ]
    return pd.Series(held, index=totals.index, dtype=bool)


def window_totals(rule: Rule, frame: RollupFrame, today: date) -> pd.DataFrame:
    """Each user's count and sum over the rule's window on ``today`` (0 for users with none)."""
    window = rule.window_for(today)
    if window is None:
        raise ValueError(f"rule {rule.rule_id} (row {rule.row}) has no window")
    first, last = window
    days = frame.days
    in_window = days[(days["day"] >= first.toordinal()) & (days["day"] <= last.toordinal())]
    with localcontext(SUMS):
        grouped = in_window.groupby("user", sort=False).agg(count=("count", "sum"), total=("total", "sum"))
    zeros = pd.Series([ZERO] * len(frame.users), index=frame.users, dtype=object)
    return pd.DataFrame(
        {
            "count": grouped["count"].reindex(frame.users, fill_value=0).astype(np.int64),
            "total": grouped["total"].reindex(frame.users).combine_first(zeros),
        }
    )


def changes(rule: Rule, frame: RollupFrame, today: date) -> pd.DataFrame:
    """The users whose value for ``rule`` changes, with the new value and their window totals."""
    totals = window_totals(rule, frame, today)
    met = totals["count"] > 0
    was_ready = frame.sent(rule.rule_id).eq(READY)
    if rule.absent:
        seen = pd.Series(frame.users.isin(frame.days["user"]), index=frame.users) | was_ready
        met = seen & ~met
    if rule.count_condition is not None:
        met &= _count_mask(totals["count"], rule.count_condition)
    if rule.sum_condition is not None:
        met &= _value_mask(rule, totals, rule.sum_condition)
    value = np.where(met & ~was_ready, READY, np.where(~met & was_ready, NOT_READY, ""))
    changed = value != ""
    return pd.DataFrame(
        {"value": value[changed], "count": totals["count"][changed], "total": totals["total"][changed]},
        index=frame.users[changed],
    )
