"""DynamoDB adapter for counters and the action outbox, and the versioned-transaction writer that
counters and the time-series rollups share.

Why transactions with optimistic versions, and no reads:
- every counter write is conditional on the version this process last saw, so two shards (or an
  SDK retry that already landed) can never overwrite each other's increments;
- on a stale version the transaction is cancelled and DynamoDB hands back the current item
  (``ReturnValuesOnConditionCheckFailure``), so a cache miss costs a retried write, never a read;
- up to 100 items go in one round trip, and a counter and the outbox entries for the actions it
  produced commit together, so a crash can never keep one without the other.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from botocore.exceptions import ClientError

from pia.core.actions import Action
from pia.counting.counters import CounterState, LaneMark

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

COUNTER_BUCKETS = 16
OUTBOX_BUCKETS = 4
MAX_TRANSACT_ITEMS = 100
MAX_TRANSACT_BYTES = 3_500_000
RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
RETRYABLE_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

AttributeMap = dict[str, Any]


def partition_bucket(text: str, buckets: int) -> int:
    """Which of ``buckets`` partitions a key spreads to. A keyed digest, not ``hash()``: every
    process, and every later deployment, must put the same key in the same partition."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % buckets


def counter_key(rule_id: str, user_id: str) -> AttributeMap:
    """Rule-major keys let a removed rule's counters be found with a Query, never a Scan; the bucket
    spreads a popular rule's users over 16 partitions."""
    return {
        "pk": {"S": f"R#{rule_id}#{partition_bucket(user_id, COUNTER_BUCKETS):02d}"},
        "sk": {"S": user_id},
    }


def rule_partitions(rule_id: str) -> list[str]:
    return [f"R#{rule_id}#{b:02d}" for b in range(COUNTER_BUCKETS)]


def outbox_key(action: Action, target: str) -> AttributeMap:
    """Lane-major keys: after a crash, the next invocation on the same lane (the only one that can be
    running there) finds its predecessor's undelivered actions with one Query."""
    return {
        "pk": {"S": f"O#{partition_bucket(action.lane, OUTBOX_BUCKETS)}"},
        "sk": {"S": f"{action.lane}#{action.action_id}#{target}"},
    }


def outbox_partitions() -> list[str]:
    return [f"O#{b}" for b in range(OUTBOX_BUCKETS)]


def counter_item(state: CounterState, now: int) -> AttributeMap:
    item: AttributeMap = {
        **counter_key(state.rule_id, state.user_id),
        "rid": {"S": state.rule_id},
        "v": {"N": str(state.version)},
        "c": {"N": str(state.count)},
        "s": {"S": str(state.total)},
        "rd": {"BOOL": state.ready},
        "n": {"N": str(state.fired)},
        "ln": {"M": {lane: {"S": f"{m.sequence}:{m.seen_at}"} for lane, m in state.lanes.items()}},
        "u": {"N": str(now)},
    }
    if state.endpoints:
        item["ep"] = {"L": [{"S": e} for e in state.endpoints]}
    if state.recent_ids:
        item["ri"] = {"S": " ".join(state.recent_ids)}
    return item


def counter_from_item(item: Mapping[str, Any]) -> CounterState:
    lanes: dict[str, LaneMark] = {}
    for lane, raw in item.get("ln", {}).get("M", {}).items():
        sequence, _, seen_at = raw["S"].partition(":")
        lanes[lane] = LaneMark(int(sequence), int(seen_at or 0))
    return CounterState(
        rule_id=item["rid"]["S"],
        user_id=item["sk"]["S"],
        version=int(item["v"]["N"]),
        count=int(item["c"]["N"]),
        total=Decimal(item["s"]["S"]),
        ready=bool(item.get("rd", {}).get("BOOL", False)),
        fired=int(item.get("n", {}).get("N", "0")),
        lanes=lanes,
        endpoints=tuple(e["S"] for e in item.get("ep", {}).get("L", [])),
        recent_ids=tuple(item.get("ri", {}).get("S", "").split()),
    )


def item_size(item: Mapping[str, Any]) -> int:
    """DynamoDB's size rule, close enough for billing estimates and request limits."""

    def size(value: Any) -> int:
        ((kind, inner),) = value.items()
        if kind == "S":
            return len(inner.encode())
        if kind == "N":
            return len(inner.strip("-").lstrip("0")) // 2 + 2
        if kind in {"BOOL", "NULL"}:
            return 1
        if kind == "B":
            return len(inner)
        if kind == "M":
            return 3 + sum(len(k.encode()) + size(v) + 1 for k, v in inner.items())
        if kind == "L":
            return 3 + sum(size(v) + 1 for v in inner)
        return len(str(inner))

    return sum(len(k.encode()) + size(v) for k, v in item.items())


class WriteStatus(StrEnum):
    COMMITTED = "committed"
    CONFLICT = "conflict"
    RETRY = "retry"
    FAILED = "failed"


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class VersionedPut(Generic[K]):
    """One item, written only if it still carries the version it was computed from, with the Puts that
    must commit with it (outbox entries). ``key`` is the caller's name for the item."""

    key: K
    table: str
    item: AttributeMap
    expected_version: int
    companions: tuple[AttributeMap, ...] = ()

    def requests(self) -> list[dict[str, Any]]:
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": self.item,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if self.expected_version == 0:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "v = :v"
            put["ExpressionAttributeValues"] = {":v": {"N": str(self.expected_version)}}
        return [{"Put": put}, *({"Put": companion} for companion in self.companions)]

    @property
    def size(self) -> int:
        return item_size(self.item) + sum(item_size(c["Item"]) + 100 for c in self.companions)


@dataclass
class TransactionOutcome(Generic[K]):
    """Per key: committed, conflicting (with the item as it is now, ``None`` if it is gone), or failed."""

    status: dict[K, WriteStatus] = field(default_factory=dict)
    current: dict[K, AttributeMap | None] = field(default_factory=dict)
    reasons: dict[K, str] = field(default_factory=dict)
    round_trips: int = 0


class VersionedWriter:
    """Commits versioned Puts in transactions of up to 100 items.

    Conflicts are reported with the item's current state for the caller to recompute; writes that
    were only cancelled alongside a conflict are re-sent here; throttling backs off.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._sleep = sleep

    def backoff(self, attempt: int) -> None:
        self._sleep(random.uniform(0, self._base_delay * (2**attempt)))

    def commit(self, puts: Sequence[VersionedPut[K]]) -> TransactionOutcome[K]:
        outcome: TransactionOutcome[K] = TransactionOutcome()
        for chunk in self._chunks(puts):
            self._commit_chunk(chunk, outcome)
        return outcome

    @staticmethod
    def _chunks(puts: Sequence[VersionedPut[K]]) -> list[list[VersionedPut[K]]]:
        chunks: list[list[VersionedPut[K]]] = []
        current: list[VersionedPut[K]] = []
        items = size = 0
        for put in puts:
            n = 1 + len(put.companions)
            s = put.size
            if current and (items + n > MAX_TRANSACT_ITEMS or size + s > MAX_TRANSACT_BYTES):
                chunks.append(current)
                current, items, size = [], 0, 0
            current.append(put)
            items += n
            size += s
        if current:
            chunks.append(current)
        return chunks

    def _commit_chunk(self, chunk: Sequence[VersionedPut[K]], outcome: TransactionOutcome[K]) -> None:
        pending = list(chunk)
        for attempt in range(self._max_attempts):
            if not pending:
                return
            transact = [request for put in pending for request in put.requests()]
            outcome.round_trips += 1
            try:
                self._client.transact_write_items(TransactItems=transact)  # type: ignore[arg-type]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "TransactionCanceledException":
                    pending = self._sort_cancellation(pending, exc.response, outcome)
                    if pending:
                        self.backoff(attempt)
                    continue
                if code in RETRYABLE_ERRORS:
                    self.backoff(attempt)
                    continue
                for put in pending:
                    outcome.status[put.key] = WriteStatus.FAILED
                    outcome.reasons[put.key] = f"{code}: {exc}"
                return
            for put in pending:
                outcome.status[put.key] = WriteStatus.COMMITTED
            return
        for put in pending:
            outcome.status[put.key] = WriteStatus.FAILED
            outcome.reasons[put.key] = "gave up after repeated throttling or transaction conflicts"

    @staticmethod
    def _sort_cancellation(
        pending: Sequence[VersionedPut[K]], response: Mapping[str, Any], outcome: TransactionOutcome[K]
    ) -> list[VersionedPut[K]]:
        reasons: list[dict[str, Any]] = list(response.get("CancellationReasons") or [])
        retry: list[VersionedPut[K]] = []
        index = 0
        for put in pending:
            reason: dict[str, Any] = reasons[index] if index < len(reasons) else {"Code": "Unknown"}
            index += 1 + len(put.companions)
            code = reason.get("Code", "None")
            if code == "ConditionalCheckFailed":
                outcome.status[put.key] = WriteStatus.CONFLICT
                outcome.current[put.key] = reason.get("Item") or None
            elif code in ("None", *RETRYABLE_REASONS) or (code == "Unknown" and not reasons):
                retry.append(put)
            else:
                outcome.status[put.key] = WriteStatus.FAILED
                outcome.reasons[put.key] = f"{code}: {reason.get('Message', '')}"
        return retry


def outbox_put(table: str, action: Action, target: str, now: int) -> AttributeMap:
    """An outbox entry, to commit in the same transaction as the state change that produced it."""
    return {
        "TableName": table,
        "Item": {
            **outbox_key(action, target),
            "a": {"S": action.dumps()},
            "tg": {"S": target},
            "t": {"N": str(now)},
        },
    }


def query_partition(client: DynamoDBClient, table: str, partition: str, **extra: Any) -> list[AttributeMap]:
    """Every item of one partition, following ``LastEvaluatedKey`` (one page holds at most 1 MB)."""
    items: list[AttributeMap] = []
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": partition}},
        **extra,
    }
    while True:
        page = client.query(**kwargs)
        items.extend(page.get("Items", []))
        last = page.get("LastEvaluatedKey")
        if not last:
            return items
        kwargs["ExclusiveStartKey"] = last


S = TypeVar("S")


@dataclass(frozen=True)
class StateWrite(Generic[S]):
    """An item's next state, guarded by the version it was computed from, plus its outbox."""

    state: S
    expected_version: int
    outbox: Sequence[tuple[Action, str]] = ()


@dataclass
class StateCommit(Generic[S]):
    """Per item key: committed, conflicting (with the item as it is now), or failed (with why)."""

    status: dict[tuple[str, str], WriteStatus] = field(default_factory=dict)
    current: dict[tuple[str, str], S | None] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    round_trips: int = 0


CounterWrite: TypeAlias = StateWrite[CounterState]
CommitResult: TypeAlias = StateCommit[CounterState]


class CounterStore:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._writer = VersionedWriter(
            client, max_attempts=max_attempts, base_delay=base_delay, sleep=self._pause
        )

    def _pause(self, seconds: float) -> None:
        """Looked up at call time, so a test (or a benchmark) can replace ``_sleep`` after construction."""
        self._sleep(seconds)

    def _backoff(self, attempt: int) -> None:
        self._writer.backoff(attempt)

    def commit(self, writes: Sequence[CounterWrite], now: int) -> CommitResult:
        """Commit writes in transactions of up to 100 items, each counter with its outbox entries."""
        outcome = self._writer.commit(
            [
                VersionedPut(
                    write.state.key,
                    self._table,
                    counter_item(write.state, now),
                    write.expected_version,
                    tuple(outbox_put(self._table, action, target, now) for action, target in write.outbox),
                )
                for write in writes
            ]
        )
        return CommitResult(
            status=outcome.status,
            current={key: counter_from_item(item) if item else None for key, item in outcome.current.items()},
            reasons=outcome.reasons,
            round_trips=outcome.round_trips,
        )

    def load(self, rule_id: str, user_id: str) -> CounterState | None:
        """Strongly consistent read, for tools and tests; the hot path never reads."""
        response = self._client.get_item(
            TableName=self._table, Key=counter_key(rule_id, user_id), ConsistentRead=True
        )
        item = response.get("Item")
        return counter_from_item(item) if item else None

    def counters_for_rule(self, rule_id: str) -> list[CounterState]:
        states: list[CounterState] = []
        for partition in rule_partitions(rule_id):
            for item in self._query(partition):
                states.append(counter_from_item(item))
        return states

    def _query(self, partition: str, **extra: Any) -> list[dict[str, Any]]:
        return query_partition(self._client, self._table, partition, **extra)

    def delete_rule_counters(self, rule_id: str) -> int:
        """Delete every counter of a rule, page by page, 25 keys per request."""
        deleted = 0
        for partition in rule_partitions(rule_id):
            keys = [
                {"pk": item["pk"], "sk": item["sk"]}
                for item in self._query(partition, ProjectionExpression="pk, sk")
            ]
            self._batch_delete(keys)
            deleted += len(keys)
        return deleted

    def pending_outbox(self, older_than: int) -> list[tuple[Action, str]]:
        entries: list[tuple[Action, str]] = []
        for partition in outbox_partitions():
            for item in self._query(partition):
                if int(item["t"]["N"]) <= older_than:
                    entries.append((Action.from_json(json.loads(item["a"]["S"])), item["tg"]["S"]))
        return entries

    def pending_outbox_for_lane(self, lane: str) -> list[tuple[Action, str]]:
        items = self._query(
            f"O#{partition_bucket(lane, OUTBOX_BUCKETS)}",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :lane)",
            ExpressionAttributeValues={
                ":pk": {"S": f"O#{partition_bucket(lane, OUTBOX_BUCKETS)}"},
                ":lane": {"S": f"{lane}#"},
            },
        )
        return [(Action.from_json(json.loads(item["a"]["S"])), item["tg"]["S"]) for item in items]

    def claim_outbox(
        self, entries: Sequence[tuple[Action, str]], now: int, lease_seconds: int = 120
    ) -> list[tuple[Action, str]]:
        """Lease entries before a recovery send: the relay and a recovering aggregator never both send one."""
        claimed: list[tuple[Action, str]] = []
        for action, target in entries:
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=outbox_key(action, target),
                    UpdateExpression="SET cl = :until",
                    ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(cl) OR cl < :now)",
                    ExpressionAttributeValues={
                        ":until": {"N": str(now + lease_seconds)},
                        ":now": {"N": str(now)},
                    },
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue
                raise
            claimed.append((action, target))
        return claimed

    def clear_outbox(self, entries: Sequence[tuple[Action, str]]) -> None:
        self._batch_delete([outbox_key(action, target) for action, target in entries])

    def _batch_delete(self, keys: Sequence[AttributeMap]) -> None:
        for start in range(0, len(keys), 25):
            requests: list[Any] = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            for attempt in range(self._max_attempts + 4):
                try:
                    response = self._client.batch_write_item(RequestItems={self._table: requests})
                except ClientError as exc:
                    # Outbox entries are deleted after their target accepted them: a delete given up
                    # on here is an action sent twice, so a throttle is waited out like a write's.
                    if exc.response.get("Error", {}).get("Code") not in RETRYABLE_ERRORS:
                        raise
                else:
                    requests = list(response.get("UnprocessedItems", {}).get(self._table, []))
                    if not requests:
                        break
                self._backoff(attempt)
            else:
                raise RuntimeError(f"{len(requests)} deletes still unprocessed after retries")
