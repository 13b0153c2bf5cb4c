"""What a warm container keeps in memory of the rollups it wrote."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from pia.core.state import StateCache
from pia.timeseries.rollups import DayTotal, SeriesRollup


def test_the_state_cache_counts_a_long_rollup_by_its_size_not_as_one_state() -> None:
    """The cache is sized from the function's memory at about 6 KB a state, the size of a counter. A
    rollup holds a day per active day: 100 days take about 27 KB in memory, 400 days 110 KB, so a warm
    aggregator of 512 MB caching 61,000 such rollups ran out of memory, and each restart refilled it."""
    today = date(2026, 11, 30)
    long = SeriesRollup(
        "purchase",
        "u",
        version=1,
        days={today - timedelta(days=i): DayTotal(1, Decimal(1)) for i in range(400)},
    )
    cache = StateCache(100)
    for n in range(100):
        cache.put("rollup", n, replace(long, user_id=f"u{n}"))
    assert len(cache) <= 100 // 18
    assert cache.get("rollup", 99) is not None and cache.get("rollup", 0) is None
    for n in range(100):
        cache.put("rollup", n, SeriesRollup("purchase", f"u{n}", version=1, days={today: DayTotal(1)}))
    assert len(cache) == 100
