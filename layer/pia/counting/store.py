"""DynamoDB adapter for counters: how a counter is stored, on the shared state table writer.

Counter item: ``pk = R#<rule_id>#<bucket 00..15>``, ``sk = <user_id>``. Rule-major keys let a removed
rule's counters be found with a Query, never a Scan; the bucket spreads a popular rule's users over
16 partitions. The item also carries the actions the counter owes (see :mod:`pia.aws.state_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

from botocore.exceptions import ClientError

from pia.aws.state_table import (
    RETRYABLE_ERRORS,
    AttributeMap,
    StateTable,
    item_size,
    lane_marks_attr,
    outbox_attrs,
    outbox_from,
    partition_bucket,
    query_partition,
)
from pia.core.state import Pending, StateCommit, StateWrite
from pia.counting.counters import NO_MEASURES, CounterKey, CounterState, LaneMark, Measures
from pia.rules.aggregates import DISTINCT_DIGEST_BYTES
from pia.rules.caps import CapWindow

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["CounterCodec", "CounterStore", "CounterWrite", "counter_key", "item_size", "rule_partitions"]

COUNTER_BUCKETS = 16


def counter_key(rule_id: str, user_id: str) -> AttributeMap:
    return {
        "pk": {"S": f"R#{rule_id}#{partition_bucket(user_id, COUNTER_BUCKETS):02d}"},
        "sk": {"S": user_id},
    }


SENT_DIGITS = 130
"""Kinesis sequence numbers reach 129 digits: zero-padded to this width they order as strings, which
is how DynamoDB compares them in a condition (its numbers hold 38 digits)."""


def lane_sent_key(lane: str) -> AttributeMap:
    return {"pk": {"S": f"L#{lane}"}, "sk": {"S": "sent"}}


def rule_partitions(rule_id: str) -> list[str]:
    return [f"R#{rule_id}#{b:02d}" for b in range(COUNTER_BUCKETS)]


def counter_item(state: CounterState, now: int) -> AttributeMap:
    item: AttributeMap = {
        **counter_key(state.rule_id, state.user_id),
        "rid": {"S": state.rule_id},
        "v": {"N": str(state.version)},
        "c": {"N": str(state.count)},
        "s": {"S": str(state.total)},
        "rd": {"BOOL": state.ready},
        "n": {"N": str(state.fired)},
        "ln": lane_marks_attr(state.lanes),
        "u": {"N": str(now)},
    }
    if state.settled:
        item["sd"] = {"BOOL": True}
    item.update(aggregate_attrs(state))
    if state.cap.used:
        item["cw"] = {"N": str(state.cap.start)}
        item["cu"] = {"N": str(state.cap.used)}
    if state.capped:
        item["cx"] = {"N": str(state.capped)}
    item.update(seen_attrs(state.endpoints, state.recent_ids))
    item.update(outbox_attrs(f"{state.rule_id}/{state.user_id}", state.pending, state.due))
    return item


def aggregate_attrs(state: CounterState) -> AttributeMap:
    """The aggregates beyond count and sum, and a value rule's last value, written only when a rule
    keeps them, so a count or sum counter's item is exactly as small as before. Distinct values are
    fixed-size digests in one binary attribute: at MAX_DISTINCT they add 8 KB."""
    attrs: AttributeMap = {}
    kept = state.measures
    if kept is NO_MEASURES:
        return attrs
    if kept.low is not None:
        attrs["lo"] = {"S": str(kept.low)}
    if kept.high is not None:
        attrs["hi"] = {"S": str(kept.high)}
    if kept.distinct:
        attrs["dv"] = {"B": b"".join(sorted(kept.distinct))}
    if kept.distinct_over:
        attrs["dx"] = {"BOOL": True}
    if kept.shown is not None:
        attrs["vs"] = {"S": kept.shown}
        attrs["va"] = {"N": str(kept.shown_at)}
    return attrs


def measures_from(item: Mapping[str, Any]) -> Measures:
    if not any(name in item for name in ("lo", "hi", "dv", "dx", "vs")):
        return NO_MEASURES
    return Measures(
        low=Decimal(item["lo"]["S"]) if "lo" in item else None,
        high=Decimal(item["hi"]["S"]) if "hi" in item else None,
        distinct=_digests(bytes(item["dv"]["B"])) if "dv" in item else frozenset(),
        distinct_over=bool(item.get("dx", {}).get("BOOL", False)),
        shown=item["vs"]["S"] if "vs" in item else None,
        shown_at=int(item["va"]["N"]) if "va" in item else 0,
    )


def _digests(raw: bytes) -> frozenset[bytes]:
    size = DISTINCT_DIGEST_BYTES
    return frozenset(raw[i : i + size] for i in range(0, len(raw), size))


def seen_attrs(endpoints: Sequence[str], recent_ids: Sequence[str]) -> dict[str, Any]:
    """The endpoints and recent producer event ids a counter or rollup item keeps, written only when
    there are any, so an item without them stays small."""
    attrs: dict[str, Any] = {}
    if endpoints:
        attrs["ep"] = {"L": [{"S": e} for e in endpoints]}
    if recent_ids:
        attrs["ri"] = {"S": " ".join(recent_ids)}
    return attrs


def lane_marks_from(item: Mapping[str, Any]) -> dict[str, LaneMark]:
    """The inverse of ``lane_marks_attr``: marks are stored as ``"<sequence>:<seen_at>"`` strings
    because sequence numbers outgrow DynamoDB's 38-digit numbers."""
    lanes: dict[str, LaneMark] = {}
    for lane, raw in item.get("ln", {}).get("M", {}).items():
        sequence, _, seen_at = raw["S"].partition(":")
        lanes[lane] = LaneMark(int(sequence), int(seen_at or 0))
    return lanes


def counter_from_item(item: Mapping[str, Any]) -> CounterState:
    lanes = lane_marks_from(item)
    pending, due = outbox_from(item)
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
        settled=bool(item.get("sd", {}).get("BOOL", False)),
        pending=pending,
        due=due,
        measures=measures_from(item),
        cap=CapWindow(int(item["cw"]["N"]), int(item["cu"]["N"])) if "cu" in item else CapWindow(),
        capped=int(item.get("cx", {}).get("N", "0")),
    )


class CounterCodec:
    def key(self, key: CounterKey) -> AttributeMap:
        return counter_key(key.rule_id, key.user_id)

    def item(self, key: CounterKey, state: CounterState, now: int) -> AttributeMap:
        return counter_item(state, now)

    def state(self, item: Mapping[str, Any]) -> CounterState:
        return counter_from_item(item)

    def key_of(self, state: CounterState) -> CounterKey:
        return state.key


CounterWrite: TypeAlias = StateWrite[CounterKey, CounterState]
CommitResult: TypeAlias = StateCommit[CounterKey, CounterState]


class CounterStore(StateTable[CounterKey, CounterState]):
    def __init__(self, client: DynamoDBClient, table_name: str, **options: Any) -> None:
        super().__init__(client, table_name, CounterCodec(), **options)

    def load(self, rule_id: str, user_id: str) -> CounterState | None:
        return self.load_state(CounterKey(rule_id, user_id))

    def mark_sent(self, lanes: Mapping[str, int], now: int) -> bool:
        """Record, per lane, the last record of a batch whose actions were sent: one small write per
        batch that spares one clearing write per item (see :func:`pia.core.state.delivered_before`).
        Conditional on moving forward, so a late writer never takes a lane's mark back. False when a
        lane's mark stayed throttled through every attempt: the caller must then clear its items."""
        written = True
        for lane, sequence in lanes.items():
            padded = str(sequence).zfill(SENT_DIGITS)
            for attempt in range(self._max_attempts):
                try:
                    self.client.put_item(
                        TableName=self.table,
                        Item={**lane_sent_key(lane), "q": {"S": padded}, "u": {"N": str(now)}},
                        ConditionExpression="attribute_not_exists(q) OR q < :q",
                        ExpressionAttributeValues={":q": {"S": padded}},
                    )
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    if code in RETRYABLE_ERRORS:
                        self.backoff(attempt)
                        continue
                    if code != "ConditionalCheckFailedException":
                        raise
                break
            else:
                written = False
        return written

    def sent_through(self, lanes: Sequence[str]) -> dict[str, int]:
        """Each lane's mark (0 if none), read strongly consistent: only a redelivery asks, for the
        entries its own records may have produced."""
        marks: dict[str, int] = {}
        for lane in lanes:
            response = self.client.get_item(
                TableName=self.table, Key=lane_sent_key(lane), ConsistentRead=True
            )
            marks[lane] = int(response.get("Item", {}).get("q", {}).get("S", "0"))
        return marks

    def counters_for_rule(self, rule_id: str) -> list[CounterState]:
        return [
            counter_from_item(item)
            for partition in rule_partitions(rule_id)
            for item in query_partition(self.client, self.table, partition)
        ]

    def delete_rule_counters(self, rule_id: str) -> int:
        """Delete every counter of a rule, page by page, 25 keys per request."""
        deleted = 0
        for partition in rule_partitions(rule_id):
            keys = [
                {"pk": item["pk"], "sk": item["sk"]}
                for item in query_partition(self.client, self.table, partition, ProjectionExpression="pk, sk")
            ]
            self._batch_delete(keys)
            deleted += len(keys)
        return deleted

    def _batch_delete(self, keys: Sequence[AttributeMap]) -> None:
        for start in range(0, len(keys), 25):
            requests: list[Any] = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            for attempt in range(10):
                try:
                    response = self.client.batch_write_item(RequestItems={self.table: requests})
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in RETRYABLE_ERRORS:
                        raise
                else:
                    requests = list(response.get("UnprocessedItems", {}).get(self.table, []))
                    if not requests:
                        break
                self.backoff(attempt)
            else:
                raise RuntimeError(f"{len(requests)} deletes still unprocessed after retries")


def still_owed(items: Sequence[Mapping[str, Any]]) -> list[Pending]:
    """The entries a scan of the counters' table shows still owed: an item's entries, less those its
    lane's mark proves sent (an item the relay holds, ``od``, owes all it holds). For tools and
    tests; the engine never scans."""
    marks = {item["pk"]["S"][2:]: int(item["q"]["S"]) for item in items if item["pk"]["S"].startswith("L#")}
    owed: list[Pending] = []
    for item in items:
        pending, due = outbox_from(item)
        owed.extend(
            p for p in pending if due or not (p.sequence and p.sequence <= marks.get(p.action.lane, 0))
        )
    return owed
