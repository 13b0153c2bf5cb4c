"""DynamoDB adapter for state items: one conditional write per item, the outbox inside the item.

Why single-item conditional Puts and not transactions: a transaction bills two write units per item
and caps at 100 items; a Put bills one per KB. Because an item carries the actions it owes (``ob``),
one Put commits a state change and its outbox together, so a crash can never keep one without the
other, and no request can outgrow DynamoDB's transaction limits however many actions a batch makes.

- Writes are conditional on the version this process last saw (``v = :v``, or
  ``attribute_not_exists(pk)``); a stale version fails and DynamoDB returns the item as it is now
  (``ReturnValuesOnConditionCheckFailure``), so a cache miss costs a retried write, never a read.
- An item that owes actions the relay must send carries ``oq`` (a bucket) and ``od`` (when they are
  due): the sparse ``pending`` index holds only those items, so the relay reads what it needs in
  bounded pages and never the whole table.
- Actions given up on are parked under ``PARKED`` for an operator (see README, "Parked actions").
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from botocore.exceptions import ClientError

from pia.core.actions import Action
from pia.core.state import Pending, StateCommit, StateItem, StateWrite, WriteStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

AttributeMap = dict[str, Any]
PENDING_INDEX = "pending"
OUTBOX_BUCKETS = 4
PARKED_PK = "PARKED"
MAX_STATEMENTS = 25
"""Statements DynamoDB takes in one ``BatchExecuteStatement``."""
OPTIONAL_ATTRIBUTES = ("sd", "ep", "ri", "ob", "oq", "od")
"""Attributes a state item's codec writes only when there is something in them: an update that
leaves one out removes it, as it removes any attribute the replaced state's item had and the new
one lacks (:attr:`pia.core.state.StateWrite.previous`), so the stored item is always exactly the
codec's item."""
RETRYABLE_STATEMENT_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceeded",
        "ThrottlingError",
        "RequestLimitExceeded",
        "InternalServerError",
        "TransactionConflict",
    }
)
RETRYABLE_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)


def partition_bucket(text: str, buckets: int) -> int:
    """Which of ``buckets`` partitions a key spreads to. A keyed digest, not ``hash()``: every
    process, and every later deployment, must put the same key in the same partition."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % buckets


def outbox_partitions() -> list[str]:
    return [f"O#{b}" for b in range(OUTBOX_BUCKETS)]


def lane_marks_attr(lanes: Mapping[str, Any]) -> AttributeMap:
    return {"M": {lane: {"S": f"{m.sequence}:{m.seen_at}"} for lane, m in lanes.items()}}


def outbox_attrs(key_text: str, pending: Sequence[Pending], due: int) -> AttributeMap:
    """The item's outbox, and the index keys that show it to the relay once it is due (``key_text``,
    the item's key, spreads items over the index's partitions)."""
    attrs: AttributeMap = {}
    if pending:
        attrs["ob"] = {
            "L": [
                {
                    "S": json.dumps(
                        {"a": p.action.to_json(), "t": p.target, "n": p.attempts, "r": p.reason}
                        | ({"q": str(p.sequence)} if p.sequence else {}),
                        separators=(",", ":"),
                        sort_keys=True,
                    )
                }
                for p in pending
            ]
        }
    if pending and due:
        attrs["oq"] = {"S": f"O#{partition_bucket(key_text, OUTBOX_BUCKETS)}"}
        attrs["od"] = {"N": str(due)}
    return attrs


def outbox_from(item: Mapping[str, Any]) -> tuple[tuple[Pending, ...], int]:
    pending: list[Pending] = []
    for raw in item.get("ob", {}).get("L", []):
        data = json.loads(raw["S"])
        pending.append(
            Pending(
                Action.from_json(data["a"]),
                data["t"],
                int(data.get("n", 0)),
                data.get("r", ""),
                int(data.get("q", 0)),
            )
        )
    due = int(item["od"]["N"]) if "od" in item and pending else 0
    return tuple(pending), due


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


K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=StateItem)


class ItemCodec(Protocol[K, S]):
    """How one kind of state is stored: its key, and its whole item (with :func:`outbox_attrs`)."""

    def key(self, key: K) -> AttributeMap: ...

    def item(self, key: K, state: S, now: int) -> AttributeMap: ...

    def state(self, item: Mapping[str, Any]) -> S: ...

    def key_of(self, state: S) -> K: ...


class StateTable(Generic[K, S]):
    """State items of one kind in one table: the :class:`~pia.core.state.StatePort` and the relay's
    view of them."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        codec: ItemCodec[K, S],
        *,
        max_attempts: int = 6,
        base_delay: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.table = table_name
        self.codec = codec
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._sleep = sleep

    def backoff(self, attempt: int) -> None:
        self._sleep(random.uniform(0, self._base_delay * (2**attempt)))

    def commit(self, writes: Sequence[StateWrite[K, S]], now: int) -> StateCommit[K, S]:
        outcome: StateCommit[K, S] = StateCommit()
        for start in range(0, len(writes), MAX_STATEMENTS):
            self._commit_batch(writes[start : start + MAX_STATEMENTS], now, outcome)
        return outcome

    def _commit_batch(self, writes: Sequence[StateWrite[K, S]], now: int, outcome: StateCommit[K, S]) -> None:
        """Up to 25 conditional writes in one call, each its own statement: each commits or fails
        alone, and only the statements DynamoDB throttled are sent again."""
        todo = list(writes)
        for attempt in range(self._max_attempts):
            try:
                statements: list[Any] = [self._statement(write, now) for write in todo]
                response = self.client.batch_execute_statement(Statements=statements)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in RETRYABLE_ERRORS:
                    self.backoff(attempt)
                    continue
                for write in todo:
                    outcome.status[write.key] = WriteStatus.FAILED
                    outcome.reasons[write.key] = f"{code}: {exc}"
                return
            again: list[StateWrite[K, S]] = []
            for write, answer in zip(todo, response.get("Responses", []), strict=True):
                error = answer.get("Error")
                if error is None:
                    outcome.status[write.key] = WriteStatus.COMMITTED
                    continue
                code = error.get("Code", "")
                if code == "ConditionalCheckFailed":
                    item: Mapping[str, Any] | None = error.get("Item")
                    outcome.status[write.key] = WriteStatus.CONFLICT
                    outcome.current[write.key] = self.codec.state(item) if item else None
                elif code == "DuplicateItem":
                    self._put(write, now, outcome)
                elif code in RETRYABLE_STATEMENT_ERRORS:
                    again.append(write)
                else:
                    outcome.status[write.key] = WriteStatus.FAILED
                    outcome.reasons[write.key] = f"{code}: {error.get('Message', '')}"
            todo = again
            if not todo:
                return
            self.backoff(attempt)
        for write in todo:
            outcome.status[write.key] = WriteStatus.FAILED
            outcome.reasons[write.key] = "gave up after repeated throttling"

    def _statement(self, write: StateWrite[K, S], now: int) -> dict[str, Any]:
        """A new item is an ``INSERT`` (refused if the item exists); a known one an ``UPDATE`` of every
        attribute, conditional on its key and version, that also removes the attributes the new
        state leaves out, so the stored item is exactly the codec's item, as a Put would leave it."""
        item = self.codec.item(write.key, write.state, now)
        if write.expected_version == 0:
            names = list(item)
            fields = ", ".join(f"'{name}': ?" for name in names)
            return {
                "Statement": f'INSERT INTO "{self.table}" VALUE {{{fields}}}',
                "Parameters": [item[name] for name in names],
            }
        key = {name: item[name] for name in self.codec.key(write.key)}
        sets = [name for name in item if name not in key]
        gone = set(OPTIONAL_ATTRIBUTES)
        if write.previous is not None:
            gone |= set(self.codec.item(write.key, write.previous, now))
        removes = sorted(name for name in gone if name not in item)
        clauses = "".join(f' SET "{name}" = ?' for name in sets) + "".join(
            f' REMOVE "{name}"' for name in removes
        )
        where = " AND ".join(f'"{name}" = ?' for name in [*key, "v"])
        return {
            "Statement": f'UPDATE "{self.table}"{clauses} WHERE {where}',
            "Parameters": [item[name] for name in sets]
            + [key[name] for name in key]
            + [{"N": str(write.expected_version)}],
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _put(self, write: StateWrite[K, S], now: int, outcome: StateCommit[K, S]) -> None:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": self.codec.item(write.key, write.state, now),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if write.expected_version == 0:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            request["ConditionExpression"] = "v = :v"
            request["ExpressionAttributeValues"] = {":v": {"N": str(write.expected_version)}}
        for attempt in range(self._max_attempts):
            try:
                self.client.put_item(**request)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    item: Mapping[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
                    outcome.status[write.key] = WriteStatus.CONFLICT
                    outcome.current[write.key] = self.codec.state(item) if item else None
                    return
                if code in RETRYABLE_ERRORS:
                    self.backoff(attempt)
                    continue
                outcome.status[write.key] = WriteStatus.FAILED
                outcome.reasons[write.key] = f"{code}: {exc}"
                return
            outcome.status[write.key] = WriteStatus.COMMITTED
            return
        outcome.status[write.key] = WriteStatus.FAILED
        outcome.reasons[write.key] = "gave up after repeated throttling"

    def partitions(self) -> list[str]:
        """The partitions of the ``pending`` index."""
        return outbox_partitions()

    def key_for(self, state: S) -> K:
        return self.codec.key_of(state)

    def load_state(self, key: K) -> S | None:
        """Strongly consistent read, for tools and tests; the hot path never reads."""
        response = self.client.get_item(TableName=self.table, Key=self.codec.key(key), ConsistentRead=True)
        item = response.get("Item")
        return self.codec.state(item) if item else None

    def due_page(
        self, partition: str, now: int, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[S], dict[str, Any] | None]:
        """One page of the items whose outbox is due, oldest due first (the index is eventually
        consistent: a claim's conditional write settles any staleness)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": PENDING_INDEX,
            "KeyConditionExpression": "oq = :q AND od <= :now",
            "ExpressionAttributeValues": {":q": {"S": partition}, ":now": {"N": str(now)}},
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = self.client.query(**kwargs)
        return [self.codec.state(item) for item in page.get("Items", [])], page.get("LastEvaluatedKey")

    def park(self, entries: Sequence[Pending], now: int) -> None:
        """Keep actions given up on where an operator finds them (``pk = PARKED``), 25 per request."""
        requests: list[Any] = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": PARKED_PK},
                        "sk": {"S": f"{p.action.action_id}#{p.target}"},
                        "a": {"S": p.action.dumps()},
                        "tg": {"S": p.target},
                        "n": {"N": str(p.attempts)},
                        "r": {"S": p.reason or "too many actions owed at once"},
                        "t": {"N": str(now)},
                    }
                }
            }
            for p in entries
        ]
        for start in range(0, len(requests), 25):
            chunk = requests[start : start + 25]
            for attempt in range(self._max_attempts + 4):
                try:
                    response = self.client.batch_write_item(RequestItems={self.table: chunk})
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in RETRYABLE_ERRORS:
                        raise
                else:
                    chunk = list(response.get("UnprocessedItems", {}).get(self.table, []))
                    if not chunk:
                        break
                self.backoff(attempt)
            else:
                raise RuntimeError(f"{len(chunk)} parked actions still unprocessed after retries")

    def parked(self) -> list[Pending]:
        return [
            Pending(
                Action.from_json(json.loads(item["a"]["S"])),
                item["tg"]["S"],
                int(item["n"]["N"]),
                item["r"]["S"],
            )
            for item in query_partition(self.client, self.table, PARKED_PK)
        ]
