"""AWS adapters of the time-series path: rollups and evaluator state in DynamoDB (the raw events' bucket is
:class:`pia.timeseries.archive.RawEventArchive`).

Time-series table layout (``pk``, ``sk``; TTL attribute ``ttl``):
- rollup: ``S#<series>#<bucket 00..15>`` / ``<user_id>``; ``sr`` series, ``v`` version, ``ac``
  activation, ``d`` map day -> ``"<count>:<sum>"`` (the aggregator's part), ``ln`` lane marks,
  ``ba`` / ``b`` / ``bs`` the backfill's activation, days and source (the computation it came
  from), ``ep`` endpoints, ``st`` map rule -> value last
  sent, ``u`` updated, ``ttl`` the last day plus the retention (never before ``wd``, the due moment;
  none while ``kp`` marks a user held in an absence audience). Series-major keys: the evaluator
  reads a series with one Query per bucket; the bucket spreads a popular series over 16 partitions.
- backfill coverage: ``COVERAGE`` / ``<series>``; ``ac``, ``from`` (first day), ``fin`` (final),
  ``bs`` the source of the backfill last merged whole.
- seen values: ``SEEN`` / ``D#<yyyy-mm-dd>`` (``body``: JSON), and ``SEEN`` / ``CURSOR`` (``h``: the
  last archive hour summarized).

Rollups are written like counters (:mod:`pia.aws.state_table`): one conditional Put on the version
last seen, carrying the actions they owe, never read on the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

from pia.aws.state_table import (
    AttributeMap,
    StateTable,
    lane_marks_attr,
    outbox_attrs,
    outbox_from,
    partition_bucket,
    query_partition,
)
from pia.core.state import StateCommit, StateWrite
from pia.counting.store import lane_marks_from, seen_attrs
from pia.rules.ruleset import LEGACY_SERIES_PARTITIONS
from pia.timeseries.backfill import Coverage
from pia.timeseries.rollups import DayTotal, SeriesKey, SeriesRollup
from pia.timeseries.seen import SeenSummary

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

ROLLUP_BUCKETS = LEGACY_SERIES_PARTITIONS
DUE_INDEX = "due"
SIGNATURE_PREFIX = "G#"
BATCH_GET_KEYS = 100
COVERAGE_PK = "COVERAGE"
FINALIZED_PREFIX = "F#"
SEEN_PK = "SEEN"
SEEN_CURSOR_SK = "CURSOR"


def rollup_partitions(series: str, buckets: int = ROLLUP_BUCKETS) -> list[str]:
    return [f"S#{series}#{b:02d}" for b in range(buckets)]


def rollup_key(series: str, user_id: str, buckets: int = ROLLUP_BUCKETS) -> AttributeMap:
    return {"pk": {"S": f"S#{series}#{partition_bucket(user_id, buckets):02d}"}, "sk": {"S": user_id}}


def _days_attr(days: Mapping[date, DayTotal]) -> AttributeMap:
    return {"M": {day.isoformat(): {"S": f"{t.count}:{t.total}"} for day, t in sorted(days.items())}}


def _days_from(attr: Mapping[str, Any] | None) -> dict[date, DayTotal]:
    days: dict[date, DayTotal] = {}
    for day, raw in (attr or {}).get("M", {}).items():
        count, _, total = raw["S"].partition(":")
        days[date.fromisoformat(day)] = DayTotal(int(count), Decimal(total or "0"))
    return days


def _expiry(state: SeriesRollup, now: int, retention_days: int) -> int:
    """A rollup lives as long as the raw events of its last day: a rolling window has long moved past
    it, and a fixed window that old is final. It also outlives its due moment by a day, so a quiet
    period longer than the retention still ends with the user entering, not with the item gone."""
    last = state.last_day()
    floor = max(now + 86_400, state.wake + 86_400 if state.wake else 0)
    if last is None:
        return max(now + retention_days * 86_400, floor)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=retention_days + 1)
    return max(int(end.timestamp()), floor)


def rollup_item(
    state: SeriesRollup, now: int, retention_days: int, buckets: int = ROLLUP_BUCKETS
) -> AttributeMap:
    item: AttributeMap = {
        **rollup_key(state.series, state.user_id, buckets),
        "sr": {"S": state.series},
        "v": {"N": str(state.version)},
        "ac": {"S": state.activation},
        "d": _days_attr(state.days),
        "ln": lane_marks_attr(state.lanes),
        "ba": {"S": state.backfill_activation},
        "b": _days_attr(state.backfill),
        "st": {"M": {rule_id: {"S": value} for rule_id, value in sorted(state.sent.items())}},
        "u": {"N": str(now)},
    }
    if state.keep:
        item["kp"] = {"BOOL": True}
    else:
        item["ttl"] = {"N": str(_expiry(state, now, retention_days))}
    item["np"] = {"N": str(buckets)}
    if state.wake:
        item["wd"] = {"N": str(state.wake)}
    if state.backfill_source:
        item["bs"] = {"S": state.backfill_source}
    item.update(seen_attrs(state.endpoints, state.recent_ids))
    item.update(outbox_attrs(f"{state.series}/{state.user_id}", state.pending, state.due))
    return item


def rollup_from_item(item: Mapping[str, Any]) -> SeriesRollup:
    lanes = lane_marks_from(item)
    pending, due = outbox_from(item)
    return SeriesRollup(
        series=item["sr"]["S"],
        user_id=item["sk"]["S"],
        version=int(item["v"]["N"]),
        activation=item.get("ac", {}).get("S", ""),
        days=_days_from(item.get("d")),
        lanes=lanes,
        backfill_activation=item.get("ba", {}).get("S", ""),
        backfill=_days_from(item.get("b")),
        backfill_source=item.get("bs", {}).get("S", ""),
        endpoints=tuple(e["S"] for e in item.get("ep", {}).get("L", [])),
        sent={rule_id: raw["S"] for rule_id, raw in item.get("st", {}).get("M", {}).items()},
        recent_ids=tuple(item.get("ri", {}).get("S", "").split()),
        pending=pending,
        due=due,
        partitions=int(item["np"]["N"]) if "np" in item else 0,
        wake=int(item["wd"]["N"]) if "wd" in item else 0,
        keep=bool(item.get("kp", {}).get("BOOL", False)),
    )


RollupWrite: TypeAlias = StateWrite[SeriesKey, SeriesRollup]
RollupCommit: TypeAlias = StateCommit[SeriesKey, SeriesRollup]


class RollupCodec:
    def __init__(self, retention_days: int, buckets: int) -> None:
        self._retention_days = retention_days
        self.buckets = buckets
        self.layout: dict[str, int] = {}

    def partitions(self, series: str) -> int:
        return self.layout.get(series, self.buckets)

    def key(self, key: SeriesKey) -> AttributeMap:
        return rollup_key(key.series, key.user_id, self.partitions(key.series))

    def item(self, key: SeriesKey, state: SeriesRollup, now: int) -> AttributeMap:
        return rollup_item(
            state, now, self._retention_days, state.partitions or self.partitions(state.series)
        )

    def state(self, item: Mapping[str, Any]) -> SeriesRollup:
        return rollup_from_item(item)

    def key_of(self, state: SeriesRollup) -> SeriesKey:
        return state.key


class RollupStore(StateTable[SeriesKey, SeriesRollup]):
    """Rollups in the time-series table, each with the actions it owes and, in the sparse ``due``
    index (``pk``, ``wd``; keys only), when it is next due."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        retention_days: int = 400,
        buckets: int = ROLLUP_BUCKETS,
        **options: Any,
    ) -> None:
        self._rollup_codec = RollupCodec(retention_days, buckets)
        super().__init__(client, table_name, self._rollup_codec, **options)

    def use_layout(self, layout: Mapping[str, int]) -> None:
        """Each series' partition count, as the ruleset recorded it when the series was created."""
        self._rollup_codec.layout = dict(layout)

    def series_partitions(self, series: str) -> int:
        return self._rollup_codec.partitions(series)

    def series_rollups(self, series: str) -> list[SeriesRollup]:
        """Every user's rollup of a series: one paginated Query per bucket."""
        return [
            rollup_from_item(item)
            for partition in rollup_partitions(series, self.series_partitions(series))
            for item in query_partition(self.client, self.table, partition)
        ]

    def rollup_page(
        self, series: str, partition: int, *, due_at: int | None, limit: int, start: dict[str, Any] | None
    ) -> tuple[list[SeriesRollup], dict[str, Any] | None]:
        """At most ``limit`` rollups of a partition: those due by ``due_at`` (read through the
        keys-only index, then fetched 100 at a time), or all of them when it is ``None``. Query pages
        (each at most 1 MB) are followed until the bound; the key to continue from comes back."""
        pk = f"S#{series}#{partition:02d}"
        kwargs: dict[str, Any] = {"TableName": self.table}
        if due_at is None:
            kwargs["KeyConditionExpression"] = "pk = :pk"
            kwargs["ExpressionAttributeValues"] = {":pk": {"S": pk}}
        else:
            kwargs["IndexName"] = DUE_INDEX
            kwargs["KeyConditionExpression"] = "pk = :pk AND wd <= :t"
            kwargs["ExpressionAttributeValues"] = {":pk": {"S": pk}, ":t": {"N": str(due_at)}}
        items: list[AttributeMap] = []
        last = start
        while len(items) < limit:
            if last:
                kwargs["ExclusiveStartKey"] = last
            page = self.client.query(**kwargs, Limit=limit - len(items))
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                break
        if due_at is not None:
            items = self._fetch([{"pk": item["pk"], "sk": item["sk"]} for item in items])
        return [rollup_from_item(item) for item in items], last

    def _fetch(self, keys: Sequence[AttributeMap]) -> list[AttributeMap]:
        """The items of ``keys`` (BatchGetItem: 100 keys a request, unprocessed keys retried); an item
        deleted since the index was read is simply absent."""
        items: list[AttributeMap] = []
        for first in range(0, len(keys), BATCH_GET_KEYS):
            chunk: list[AttributeMap] = list(keys[first : first + BATCH_GET_KEYS])
            for attempt in range(self._max_attempts + 4):
                response = self.client.batch_get_item(RequestItems={self.table: {"Keys": chunk}})
                items.extend(response.get("Responses", {}).get(self.table, []))
                unprocessed: Mapping[str, Any] = response.get("UnprocessedKeys", {}).get(self.table, {})
                chunk = list(unprocessed.get("Keys", []))
                if not chunk:
                    break
                self.backoff(attempt)
            else:
                raise RuntimeError(f"{len(chunk)} due rollups still unprocessed after retries")
        return items

    def rollups_by_key(self, series: str, users: Sequence[str]) -> dict[str, SeriesRollup]:
        """The rollups of ``users`` that exist (BatchGetItem, as :meth:`rollup_page` fetches due ones)."""
        codec = self._rollup_codec
        items = self._fetch([codec.key(SeriesKey(series, user)) for user in users])
        return {state.user_id: state for state in map(rollup_from_item, items)}

    def load(self, series: str, user_id: str) -> SeriesRollup | None:
        """Strongly consistent read, for tools and tests; the aggregator never reads."""
        return self.load_state(SeriesKey(series, user_id))


class CoverageTable:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def all(self) -> dict[str, Coverage]:
        return {
            item["sk"]["S"]: Coverage(
                item["ac"]["S"],
                date.fromisoformat(item["from"]["S"]),
                bool(item["fin"]["BOOL"]),
                item.get("bs", {}).get("S", ""),
            )
            for item in query_partition(self._client, self._table, COVERAGE_PK)
            if not item["sk"]["S"].startswith((FINALIZED_PREFIX, SIGNATURE_PREFIX))
        }

    def signatures(self) -> dict[str, str]:
        """Per series, the rules its rollups' due moments were last computed from (see
        :func:`pia.timeseries.rollups.rules_signature`)."""
        return {
            item["sk"]["S"][len(SIGNATURE_PREFIX) :]: item["g"]["S"]
            for item in query_partition(
                self._client,
                self._table,
                COVERAGE_PK,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :g)",
                ExpressionAttributeValues={":pk": {"S": COVERAGE_PK}, ":g": {"S": SIGNATURE_PREFIX}},
            )
        }

    def record_signature(self, series: str, signature: str, now: int) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": COVERAGE_PK},
                "sk": {"S": SIGNATURE_PREFIX + series},
                "g": {"S": signature},
                "u": {"N": str(now)},
            },
        )

    def finalized(self) -> set[str]:
        """Closed date rules whose final evaluation is done: nothing is ever sent for them again."""
        return {
            item["sk"]["S"][len(FINALIZED_PREFIX) :]
            for item in query_partition(self._client, self._table, COVERAGE_PK)
            if item["sk"]["S"].startswith(FINALIZED_PREFIX)
        }

    def record_final(self, rule_id: str, now: int) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={"pk": {"S": COVERAGE_PK}, "sk": {"S": FINALIZED_PREFIX + rule_id}, "u": {"N": str(now)}},
        )

    def record(self, series: str, coverage: Coverage, now: int) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": COVERAGE_PK},
                "sk": {"S": series},
                "ac": {"S": coverage.activation},
                "from": {"S": coverage.first_day.isoformat()},
                "fin": {"BOOL": coverage.final},
                **({"bs": {"S": coverage.source}} if coverage.source else {}),
                "u": {"N": str(now)},
            },
        )


class SeenValuesTable:
    """Daily summaries of the event names and attribute values seen; the rule poller's ``SeenValues``."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        retention_days: int = 400,
        cache_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._table = table_name
        self._retention_days = retention_days
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._merged: dict[date, tuple[float, SeenSummary]] = {}

    def _since(self, since: date) -> SeenSummary:
        """One paginated Query per ``since``, reused for a few minutes: a poller run asks for many
        rules, and a warm container must still see new values soon."""
        cached = self._merged.get(since)
        if cached is not None and self._monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        merged = SeenSummary()
        for item in query_partition(
            self._client,
            self._table,
            SEEN_PK,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :from AND :to",
            ExpressionAttributeValues={
                ":pk": {"S": SEEN_PK},
                ":from": {"S": f"D#{since.isoformat()}"},
                ":to": {"S": "D#9999-12-31"},
            },
        ):
            merged.merge(SeenSummary.loads(item["body"]["S"]))
        self._merged[since] = (self._monotonic(), merged)
        return merged

    def event_names(self, since: date) -> set[str]:
        return set(self._since(since).events)

    def attribute_values(self, event_name: str, attribute_name: str, since: date) -> set[str]:
        return set(self._since(since).events.get(event_name, {}).get(attribute_name, set()))

    def summary(self, day: date) -> SeenSummary:
        response = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": SEEN_PK}, "sk": {"S": f"D#{day.isoformat()}"}}
        )
        item = response.get("Item")
        return SeenSummary.loads(item["body"]["S"]) if item else SeenSummary()

    def save(self, day: date, summary: SeenSummary, now: int) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": SEEN_PK},
                "sk": {"S": f"D#{day.isoformat()}"},
                "body": {"S": summary.dumps()},
                "ttl": {"N": str(now + self._retention_days * 86_400)},
            },
        )
        self._merged.clear()

    def cursor(self) -> datetime | None:
        response = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": SEEN_PK}, "sk": {"S": SEEN_CURSOR_SK}}
        )
        item = response.get("Item")
        return datetime.fromisoformat(item["h"]["S"]) if item else None

    def set_cursor(self, hour: datetime) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={"pk": {"S": SEEN_PK}, "sk": {"S": SEEN_CURSOR_SK}, "h": {"S": hour.isoformat()}},
        )
