"""The child process of :mod:`bench.memory`: fill the state cache, run one batch, print peak RSS."""

from __future__ import annotations

import json
import os
import resource
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from pia_cli.local_lambda import handler_module

handler_module("aggregator")  # the handler's imports count, as in a real container

from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord  # noqa: E402

from bench.cpu import LANE_RETENTION_SECONDS, AcceptingStore, AcceptingTarget  # noqa: E402
from bench.scenario import CANONICAL, bench_ruleset  # noqa: E402
from pia.core.actions import Action, ActionKind  # noqa: E402
from pia.core.state import CommitSettings, Pending, StateCache, cache_capacity  # noqa: E402
from pia.counting.aggregator import COUNTERS, Aggregator, InboundRecord  # noqa: E402
from pia.counting.counters import CounterKey, CounterState, LaneMark  # noqa: E402
from pia.counting.processor import decode_record  # noqa: E402
from pia.timeseries.realtime import ROLLUPS  # noqa: E402
from pia.timeseries.rollups import DayTotal, SeriesKey, SeriesRollup  # noqa: E402

BASE_SEQUENCE = 49_000_000_000_000_000_000_000_000_000_000_000_000_000_000


def fill_and_run() -> dict[str, Any]:
    capacity = cache_capacity(int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]))
    cache = StateCache(capacity)
    moment = datetime(2026, 11, 20, 9, tzinfo=UTC)
    lanes = {f"shardId-{s:012d}": LaneMark(BASE_SEQUENCE + s, 1_795_000_000) for s in range(2)}
    for n in range(capacity):
        user = f"user-{n:09d}-aaaaaaaaaaaaaaaaaaaa"
        endpoints = tuple(f"ep-{n:09d}-{k}-bbbbbbbbbbbbbbbb" for k in range(3))
        if n % 4:
            action = Action(
                f"{n:024x}",
                ActionKind.SET_ATTRIBUTE,
                user,
                "r" * 16,
                "trk_output",
                "ready",
                endpoints,
                6,
                Decimal(0),
                moment,
                "shardId-000000000000",
            )
            state = CounterState(
                rule_id="r" * 16,
                user_id=user,
                version=7,
                count=6,
                total=Decimal("12.5"),
                ready=True,
                fired=1,
                lanes=dict(lanes),
                endpoints=endpoints,
                recent_ids=tuple(f"{k:016x}" for k in range(8)),
                settled=True,
                pending=(Pending(action, "pinpoint"),),
            )
            cache.put(COUNTERS, CounterKey(state.rule_id, user), state)
        else:
            days = {date(2026, 10, d + 1): DayTotal(d + 1, Decimal(d)) for d in range(30)}
            rollup = SeriesRollup(
                "purchase#amount",
                user,
                9,
                "2026-10-01",
                days,
                dict(lanes),
                endpoints=endpoints,
                sent={"r" * 16: "ready"},
            )
            cache.put(ROLLUPS, SeriesKey(rollup.series, user), rollup)
    ruleset = bench_ruleset()
    aggregator = Aggregator(
        AcceptingStore(),
        lambda: ruleset,
        [AcceptingTarget()],
        settings=CommitSettings(
            clock=lambda: moment, lane_retention_seconds=LANE_RETENTION_SECONDS, cache=cache
        ),
    )
    batch = next(iter(CANONICAL.batches()))["Records"]
    decoded = [decode_record(KinesisStreamRecord(raw)) for raw in batch]
    aggregator.process([d for d in decoded if isinstance(d, InboundRecord)])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"capacity": capacity, "cached": len(cache), "peak_rss_mb": peak_kb / 1024}


if __name__ == "__main__":
    print(json.dumps(fill_and_run()))
