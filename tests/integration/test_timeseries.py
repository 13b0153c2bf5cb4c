"""The aggregator's time-series path on moto: raw archive, rollups, and real-time date-rule marks."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pia.aws.wiring import Wiring
from pia.core.events import Event
from pia.core.state import CommitSettings, StateCache
from pia.counting.counters import Position
from pia.rules.ruleset import Ruleset
from pia.timeseries.realtime import TimeSeriesPath
from pia.timeseries.rollups import DayTotal, load_zone
from pia.timeseries.store import RollupStore
from pia_cli.local_clients import LocalClients
from tests.conftest import CASE_GREENBUTTON, ROOT, TIMESERIES_TABLE, rule_row
from tests.integration.timeseries_support import RAW_EVENTS_BUCKET, _Context, date_row, doc

TOKYO = ZoneInfo("Asia/Tokyo")


class AcceptingTarget:
    name = "pinpoint"

    def send(self, actions: Any) -> Any:
        from pia.core.actions import SendResult

        return SendResult()


def test_the_aggregator_never_imports_pandas() -> None:
    code = (
        "import sys; sys.path[:0] = ['src', 'layer']; import aggregator.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'numpy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_date_rules_a_batch_costs_one_put_object_and_nothing_in_the_time_series_table(
    timeseries_stack: Any,
) -> None:
    """The canonical scenario: 100 users x 10 events, batches of 100, one count rule."""
    stack = timeseries_stack
    stack.publish([rule_row(*CASE_GREENBUTTON)], activation="2026-03-01")
    rng = random.Random(4)
    moments = [datetime(2026, 3, 10, 9, tzinfo=UTC) + timedelta(seconds=i) for i in range(1000)]
    docs = [doc(f"user-{i % 100:03d}", moments[i], "greenbutton", {"clicks": 1}) for i in range(1000)]
    rng.shuffle(docs)
    docs.insert(500, {**doc("user-000", moments[0], "_session.start"), "metrics": {}})
    stack.calls.reset()
    for n in range(0, len(docs), 100):
        assert stack.aggregate(docs[n : n + 100], start=n + 1) == {"batchItemFailures": []}

    assert stack.calls.count("s3") == stack.calls.count("s3", "PutObject") == 11
    assert not [key for key in stack.calls.tables if key[0] == TIMESERIES_TABLE]
    keys = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=RAW_EVENTS_BUCKET)["Contents"]]
    lines = [
        json.loads(line)
        for key in keys
        for line in gzip.decompress(
            stack.s3.get_object(Bucket=RAW_EVENTS_BUCKET, Key=key)["Body"].read()
        ).splitlines()
    ]
    assert len(lines) == 1000 and {line["e"] for line in lines} == {"greenbutton"}
    assert all(key.startswith("raw/2026/03/10/00/shardId-000000000000-") for key in keys)
    puts = stack.calls.count("dynamodb", "PutItem")
    round_trips = sum(stack.calls.operations.values()) - stack.calls.count("dynamodb", "GetItem") - puts
    assert round_trips / 1000 <= 0.1
    assert puts <= 100 * 10 + 100, "one conditional Put per changed counter and batch, one clear per crossing"


def test_a_user_is_marked_within_the_batch_using_inclusive_local_days(timeseries_stack: Any) -> None:
    """Asia/Tokyo: 00:00:00 and 23:59:59 on the start and finish dates count; a second either side
    does not, though in UTC those instants fall inside the window."""
    stack = timeseries_stack
    stack.set_zone("Asia/Tokyo")
    stack.clock.now = datetime(2026, 4, 1, 12, tzinfo=TOKYO)
    (rule,) = stack.publish([date_row("greater_or_equal", "4")], activation="2026-02-01").rules

    def at(day: int, month: int, h: int, m: int, s: int) -> datetime:
        return datetime(2026, month, day, h, m, s, tzinfo=TOKYO)

    inside = [at(1, 3, 0, 0, 0), at(1, 3, 23, 59, 59), at(31, 3, 0, 0, 0), at(31, 3, 23, 59, 59)]
    outside = [at(28, 2, 23, 59, 59), at(1, 4, 0, 0, 0)]
    docs = [doc("edge", m) for m in inside] + [doc("near", m) for m in inside[1:] + outside]
    assert stack.aggregate(docs, start=1) == {"batchItemFailures": []}

    assert stack.attributes() == {"edge": {"trk_date_purchase": "ready"}}
    near = stack.rollups().load(rule.series, "near")
    assert sum(t.count for t in near.days.values()) == 5
    assert near.window_total(rule.start_date, rule.finish_date) == DayTotal(3, Decimal(0))
    assert stack.evaluate()["ready"] == 0

    stack.restart()
    assert stack.aggregate(docs, start=1) == {"batchItemFailures": []}
    assert (
        stack.rollups().load(rule.series, "edge").window_total(rule.start_date, rule.finish_date).count == 4
    )
    assert stack.recorder.calls["UpdateEndpointsBatch"] == 1


def test_an_equal_rule_turns_not_ready_in_real_time_when_exceeded(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    stack.publish([date_row("equal", "2", "greater", "10", MetricName="amount")], activation="2026-03-01")
    day = datetime(2026, 3, 9, 10, tzinfo=UTC)
    stack.aggregate(
        [doc("ann", day, metrics={"amount": 6.5}), doc("ann", day, metrics={"amount": 4})], start=1
    )
    assert stack.attributes() == {"ann": {"trk_date_purchase": "ready"}}
    stack.aggregate([doc("ann", day + timedelta(hours=1), metrics={"amount": 0.25})], start=3)
    assert stack.attributes() == {"ann": {"trk_date_purchase": "not-ready"}}
    assert stack.evaluate()["actions_sent"] == 0
    assert sum(stack.calls.sent.values()) == 2


def test_events_stamped_before_the_activation_are_archived_but_left_to_the_backfill(
    timeseries_stack: Any,
) -> None:
    stack = timeseries_stack
    (rule,) = stack.publish([date_row("greater", "0")], activation="2026-03-11").rules
    stack.aggregate([doc("bo", datetime(2026, 3, 10, 8, tzinfo=UTC))], start=1)
    assert stack.rollups().load(rule.series, "bo") is None
    assert stack.attributes() == {}
    assert stack.calls.count("s3", "PutObject") == 1


def test_a_stale_cache_conflicts_and_recomputes_from_the_current_rollup(dynamodb: Any) -> None:
    """Two containers (two shards) update one user's rollup; neither reads, neither loses a count."""
    parsed_rule = date_row("greater", "3", OutputName="trk_four")
    from pia.rules.table import parse_rules

    (rule,) = parse_rules([(2, parsed_rule)]).rules
    ruleset = Ruleset(version=1, rules=(rule,), series_activation={rule.series: "2026-03-01"})
    store = RollupStore(dynamodb, TIMESERIES_TABLE)
    now = datetime(2026, 3, 10, tzinfo=UTC)

    def container() -> TimeSeriesPath:
        return TimeSeriesPath(
            None,
            store,
            [AcceptingTarget()],
            zone=load_zone("UTC"),
            retention_days=400,
            settings=CommitSettings(lane_retention_seconds=90_000, cache=StateCache(50_000)),
        )

    def record(shard: str, seq: int) -> Any:
        from pia.counting.aggregator import InboundRecord

        moment = datetime(2026, 3, 9, 12, tzinfo=UTC)
        return InboundRecord(Position(shard, seq), Event("kim", "purchase", moment, {}, {}, "ep-kim"))

    a, b = container(), container()
    assert a.process([record("s0", 1), record("s0", 2)], ruleset, now).actions == ()
    outcome = b.process([record("s1", 1), record("s1", 2)], ruleset, now)
    assert [action.value for action in outcome.actions] == ["ready"]
    assert a.process([record("s0", 2), record("s0", 3)], ruleset, now).actions == ()
    state = store.load(rule.series, "kim")
    assert state.days == {now.date() - timedelta(days=1): DayTotal(5, Decimal(0))}
    assert (state.version, state.sent) == (4, {rule.rule_id: "ready"}), "b's send cleared its outbox"
    assert state.pending == ()


def test_the_archive_is_listed_page_by_page_from_a_day_on(timeseries_stack: Any) -> None:
    from pia.timeseries.archive import RawEventArchive, listing_start

    stack = timeseries_stack
    for day in range(1, 6):
        stack.clock.now = datetime(2026, 3, day, 23, 59, tzinfo=UTC)
        stack.aggregate([doc("kai", stack.clock.now)], start=day)
    stack.calls.reset()
    archive = RawEventArchive(stack.calls("s3"), RAW_EVENTS_BUCKET)
    keys = list(archive.keys(start_after=listing_start(datetime(2026, 3, 2).date()), page_size=2))
    assert [key[:15] for key in keys] == [
        "raw/2026/03/02/",
        "raw/2026/03/03/",
        "raw/2026/03/04/",
        "raw/2026/03/05/",
    ]
    assert stack.calls.count("s3", "ListObjectsV2") == 2
    assert [e.timestamp.day for key in keys for _, e in archive.read(key).events] == [2, 3, 4, 5]


def test_an_archive_outage_fails_the_batch_for_retry_and_loses_nothing(timeseries_stack: Any) -> None:
    stack = timeseries_stack
    (rule,) = stack.publish([date_row("greater", "1")], activation="2026-03-01").rules
    docs = [
        doc("lea", datetime(2026, 3, 9, 10, tzinfo=UTC)),
        doc("lea", datetime(2026, 3, 9, 11, tzinfo=UTC)),
    ]
    stack.s3.delete_bucket(Bucket=RAW_EVENTS_BUCKET)
    response = stack.aggregate(docs, start=1)
    assert len(response["batchItemFailures"]) == 2
    assert stack.rollups().load(rule.series, "lea") is None and stack.attributes() == {}
    stack.s3.create_bucket(Bucket=RAW_EVENTS_BUCKET)
    assert stack.aggregate(docs, start=1) == {"batchItemFailures": []}
    assert stack.rollups().load(rule.series, "lea").window_total(rule.start_date, rule.finish_date).count == 2
    assert stack.attributes() == {"lea": {"trk_date_purchase": "ready"}}


def test_a_refused_older_value_never_overwrites_a_newer_one_at_the_target(
    timeseries_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: a target refused ``ready``, the next batch delivered ``not-ready``, and then the relay
    sent the stale ``ready``: the destination ended on ``ready`` while the state said ``not-ready``."""
    from action_relay import app as relay_app

    stack = timeseries_stack
    stack.clock.now = datetime(2026, 3, 10, 9, tzinfo=UTC)
    (rule,) = stack.publish([date_row("smaller", "3")], activation="2026-03-01").rules
    saved = relay_app.container.rewire(Wiring(LocalClients("pia-test", base=stack.calls), stack.clock))
    stack.recorder.fail_next = 10
    assert stack.aggregate([doc("zoe", stack.clock.now)], start=1) == {"batchItemFailures": []}
    assert stack.attributes() == {}, "the target refused ready"
    stack.recorder.fail_next = 0
    stack.calls.reset()
    stack.clock.now += timedelta(seconds=30)
    moments = [stack.clock.now, stack.clock.now + timedelta(seconds=1)]
    assert stack.aggregate([doc("zoe", m) for m in moments], start=2) == {"batchItemFailures": []}
    for minutes in (10, 30, 90):
        stack.clock.now += timedelta(minutes=minutes)
        relay_app.lambda_handler({}, _Context())
    relay_app.container.rewire(saved)
    assert stack.rollups().load(rule.series, "zoe").sent == {rule.rule_id: "not-ready"}
    assert stack.attributes() == {"zoe": {rule.output_name: "not-ready"}}
    assert [value for (_, _, value) in stack.calls.sent] == ["not-ready"], (
        "ready was superseded, never resent"
    )
