"""Peak RSS of one aggregator invocation with its state cache full, against the function's memory.

Measured in a fresh interpreter (``python -m bench.memory``), so nothing else this process loaded
counts: it imports the handler, fills the one state cache to the capacity it sizes from the
function's memory with counters and rollups shaped like the busiest ones (lane marks, endpoints,
recent event ids, one owed action), runs one batch of the canonical scenario through the aggregator
with in-memory fakes, and reports ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_MEMORY_MB = 512
"""template.yaml Globals: MemorySize."""


@dataclass(frozen=True)
class Memory:
    function_mb: int
    capacity: int
    peak_rss_mb: float
    cached: int

    def to_json(self) -> dict[str, float]:
        return {
            "function_mb": self.function_mb,
            "cache_capacity": self.capacity,
            "states_cached": self.cached,
            "peak_rss_mb": self.peak_rss_mb,
            "share_of_function_memory": self.peak_rss_mb / self.function_mb,
        }


def measure(memory_mb: int = FUNCTION_MEMORY_MB) -> Memory:
    env = {**os.environ, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Memory(memory_mb, data["capacity"], data["peak_rss_mb"], data["cached"])


def _fill_and_run() -> dict[str, Any]:
    from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

    import aggregator.app  # noqa: F401  (the handler's imports count)
    from bench.cpu import LANE_RETENTION_SECONDS, AcceptingStore, AcceptingTarget
    from bench.scenario import CANONICAL, bench_ruleset
    from pia.core.actions import Action, ActionKind
    from pia.core.state import Pending, StateCache, cache_capacity
    from pia.counting.aggregator import COUNTERS, Aggregator, InboundRecord
    from pia.counting.counters import CounterKey, CounterState, LaneMark
    from pia.counting.processor import decode_record
    from pia.timeseries.realtime import ROLLUPS
    from pia.timeseries.rollups import DayTotal, SeriesKey, SeriesRollup

    capacity = cache_capacity(int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]))
    cache = StateCache(capacity)
    moment = datetime(2026, 11, 20, 9, tzinfo=UTC)
    lanes = {f"shardId-{s:012d}": LaneMark(49_000_000_000_000_000_000_000_000_000_000_000_000_000_000 + s, 1_795_000_000) for s in range(2)}
    for n in range(capacity):
        user = f"user-{n:09d}-aaaaaaaaaaaaaaaaaaaa"
        endpoints = tuple(f"ep-{n:09d}-{k}-bbbbbbbbbbbbbbbb" for k in range(3))
        if n % 4:
            action = Action(f"{n:024x}", ActionKind.SET_ATTRIBUTE, user, "r" * 16, "trk_output", "ready", endpoints, 6, Decimal(0), moment, "shardId-000000000000")
            state = CounterState(
                rule_id="r" * 16, user_id=user, version=7, count=6, total=Decimal("12.5"), ready=True, fired=1,
                lanes=dict(lanes), endpoints=endpoints, recent_ids=tuple(f"{k:016x}" for k in range(8)),
                settled=True, pending=(Pending(action, "pinpoint"),),
            )
            cache.put(COUNTERS, CounterKey(state.rule_id, user), state)
        else:
            days = {date(2026, 10, d + 1): DayTotal(d + 1, Decimal(d)) for d in range(30)}
            rollup = SeriesRollup("purchase#amount", user, 9, "2026-10-01", days, dict(lanes), endpoints=endpoints, sent={"r" * 16: "ready"})
            cache.put(ROLLUPS, SeriesKey(rollup.series, user), rollup)
    ruleset = bench_ruleset()
    aggregator = Aggregator(
        AcceptingStore(), lambda: ruleset, [AcceptingTarget()], clock=lambda: moment,
        lane_retention_seconds=LANE_RETENTION_SECONDS, cache=cache,
    )
    batch = next(iter(CANONICAL.batches()))["Records"]
    decoded = [decode_record(KinesisStreamRecord(raw)) for raw in batch]
    aggregator.process([d for d in decoded if isinstance(d, InboundRecord)])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"capacity": capacity, "cached": len(cache), "peak_rss_mb": peak_kb / 1024}


if __name__ == "__main__":
    print(json.dumps(_fill_and_run()))
