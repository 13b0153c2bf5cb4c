"""CPU per record of our code, against the floor any consumer pays: ``json.loads(base64.b64decode(data))``.

The aggregator runs with its AWS adapters replaced by in-memory fakes (a :class:`CounterPort` that
commits everything, an :class:`ActionTarget` that accepts everything), so only pia's code is timed:
Powertools' record wrapper, decoding and validation, grouping, exact one-at-a-time counting, action
ids and the commit bookkeeping. Each repeat starts from a fresh aggregator (an empty cache, as in a
new container). The two are timed alternately, so load on the machine hits both alike, and the
figure is the ratio of their medians of ``time.process_time``.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord

from bench.scenario import Scenario, bench_ruleset
from pia.core.actions import Action, SendResult
from pia.core.state import CommitSettings, Pending, StateCache, WriteStatus
from pia.counting.aggregator import Aggregator, InboundRecord
from pia.counting.processor import decode_record
from pia.counting.store import CommitResult, CounterWrite
from pia.rules.ruleset import Ruleset

LANE_RETENTION_SECONDS = 86_400 + 3_600


class AcceptingStore:
    """A CounterPort that commits every write, as DynamoDB does when nothing conflicts."""

    def __init__(self) -> None:
        self.writes = 0

    def commit(self, writes: Sequence[CounterWrite], now: int) -> CommitResult:
        self.writes += len(writes)
        return CommitResult(status={w.key: WriteStatus.COMMITTED for w in writes})

    def park(self, entries: Sequence[Pending], now: int) -> None:
        return None

    def mark_sent(self, lanes: Mapping[str, int], now: int) -> bool:
        return True

    def sent_through(self, lanes: Sequence[str]) -> dict[str, int]:
        return dict.fromkeys(lanes, 0)


class AcceptingTarget:
    name = "pinpoint"

    def __init__(self) -> None:
        self.sent = 0

    def send(self, actions: Sequence[Action]) -> SendResult:
        self.sent += len(actions)
        return SendResult()


@dataclass(frozen=True)
class CpuRatio:
    ratio: float
    ours_us_per_record: float
    decode_us_per_record: float
    repeats: int

    def to_json(self) -> dict[str, float]:
        return {
            "ratio": self.ratio,
            "ours_us_per_record": self.ours_us_per_record,
            "decode_us_per_record": self.decode_us_per_record,
            "repeats": self.repeats,
        }


def _cpu(work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def measure(scenario: Scenario, repeats: int = 15, live: Ruleset | None = None) -> CpuRatio:
    """``live``: the rules the aggregator holds; the bench's one rule by default."""
    batches = [batch["Records"] for batch in scenario.batches()]
    ruleset = live or bench_ruleset()
    moment = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    records = sum(len(b) for b in batches)

    def ours() -> None:
        aggregator = Aggregator(
            AcceptingStore(),
            lambda: ruleset,
            [AcceptingTarget()],
            settings=CommitSettings(
                clock=lambda: moment,
                lane_retention_seconds=LANE_RETENTION_SECONDS,
                cache=StateCache(200_000),
            ),
            lanes_recur=True,
        )
        for batch in batches:
            decoded = [decode_record(KinesisStreamRecord(raw)) for raw in batch]
            report = aggregator.process([d for d in decoded if isinstance(d, InboundRecord)])
            if report.failed:
                raise AssertionError(f"fake store failed {len(report.failed)} records")

    def bare() -> None:
        for batch in batches:
            for raw in batch:
                json.loads(base64.b64decode(_data(raw)))

    ours()
    bare()
    ours_samples: list[float] = []
    bare_samples: list[float] = []
    for _ in range(repeats):
        ours_samples.append(_cpu(ours))
        bare_samples.append(_cpu(bare))
    ours_seconds = statistics.median(ours_samples)
    bare_seconds = statistics.median(bare_samples)
    return CpuRatio(
        ratio=ours_seconds / bare_seconds,
        ours_us_per_record=1e6 * ours_seconds / records,
        decode_us_per_record=1e6 * bare_seconds / records,
        repeats=repeats,
    )


def _data(raw: Mapping[str, Any]) -> str:
    data: str = raw["kinesis"]["data"]
    return data
