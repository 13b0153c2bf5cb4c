"""Counting hooks: AWS round trips, DynamoDB item reads and request units, from botocore's own events.

The hooks go on a boto3 session's event emitter. Every client created from that session afterwards
inherits them (botocore copies the session's emitter into each client), which is how the handler's
own container clients, and the Pinpoint recorder's, are metered without changing either.

- A call starts at ``before-parameter-build`` (which no handler can answer, unlike ``before-call``,
  where the Pinpoint recorder answers locally) and ends at ``after-call``.
- A round trip is one HTTP attempt (``before-send``, so SDK retries count), or one call answered
  without any (the recorder's).
- Item reads are the items GetItem, BatchGetItem, TransactGetItems, Query and Scan return.
- Write units follow DynamoDB's billing rules: per item, ``ceil(max(size before, size after) / 1 KB)``,
  at least 1, doubled inside TransactWriteItems. Read units: ``ceil(size / 4 KB)`` per item for
  Get/BatchGet (a Query or Scan page rounds its total), halved for eventually consistent reads,
  doubled in TransactGetItems. Sizes come from :func:`pia.counting.store.item_size`.
- A write to an item in the sparse ``pending`` index (it carries ``oq``, before or after) bills the
  index too: one unit to add or remove the item there, one to change it.
- A write that adds, moves or removes a rollup's due moment (``wd``) bills the sparse, keys-only
  ``due`` index: one unit to add or remove the entry, two to move it; a write that keeps ``wd`` as it
  was bills nothing there (``due_index_write_units`` shows these separately, inside ``write_units``).
- A conditional write that fails its condition is billed like the write (DynamoDB charges it);
  other failed calls are not, and ``failed_calls`` shows how many there were.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pia.aws.state_table import item_size

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


class ItemSource(Protocol):
    """The stored state the meter sizes writes against (moto's, in the bench)."""

    def key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]: ...

    def current(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None: ...


@dataclass
class Usage:
    round_trips: Counter[str] = field(default_factory=Counter)
    reads_by_table: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: int = 0
    items_written: int = 0
    failed_calls: int = 0
    due_index_write_units: int = 0

    @property
    def calls(self) -> int:
        return sum(self.round_trips.values())

    @property
    def item_reads(self) -> int:
        return sum(self.reads_by_table.values())

    def calls_to(self, service: str) -> int:
        return sum(n for name, n in self.round_trips.items() if name.split(".", 1)[0] == service)

    def to_json(self) -> dict[str, Any]:
        return {
            "round_trips": dict(sorted(self.round_trips.items())),
            "calls": self.calls,
            "item_reads": self.item_reads,
            "item_reads_by_table": dict(sorted(self.reads_by_table.items())),
            "read_units": self.read_units,
            "write_units": self.write_units,
            "items_written": self.items_written,
            "failed_calls": self.failed_calls,
            "due_index_write_units": self.due_index_write_units,
        }


@dataclass
class _Write:
    table: str
    key: dict[str, Any]
    kind: str
    new_item: dict[str, Any] | None
    before: int
    factor: int
    before_item: dict[str, Any] | None = None


@dataclass
class _Call:
    name: str
    request: dict[str, Any]
    writes: list[_Write]
    sends: int = 0


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


class Meter:
    """Counts what the clients of one session send while :meth:`measure` is open."""

    def __init__(self, items: ItemSource) -> None:
        self._items = items
        self._usage: Usage | None = None
        self._call: _Call | None = None

    def attach(self, events: Any) -> None:
        """Register on a session's emitter; ``register_first`` so moto's ``before-send`` stub, which
        answers, cannot hide an attempt from us."""
        events.register("before-parameter-build", self._start, unique_id="bench-meter-start")
        events.register_first("before-send", self._before_send, unique_id="bench-meter-before-send")
        events.register("after-call", self._after_call, unique_id="bench-meter-after-call")

    @contextmanager
    def measure(self) -> Iterator[Usage]:
        self._usage = Usage()
        try:
            yield self._usage
        finally:
            self._usage = None

    def _start(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        if self._usage is None:
            return
        service = model.service_model.service_name
        request: dict[str, Any] = {}
        writes: list[_Write] = []
        if service == "dynamodb":
            request = dict(params)
            writes = self._planned_writes(model.name, request)
        self._call = _Call(f"{service}.{model.name}", request, writes)

    def _before_send(self, **_: Any) -> None:
        if self._usage is not None and self._call is not None:
            self._call.sends += 1

    def _after_call(self, http_response: Any, parsed: Mapping[str, Any], **_: Any) -> None:
        usage, call = self._usage, self._call
        if usage is None or call is None:
            return
        self._call = None
        usage.round_trips[call.name] += max(1, call.sends)
        if http_response.status_code >= 300:
            usage.failed_calls += 1
            if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                for write in call.writes:
                    usage.write_units += write.factor * _units(write.before, WRITE_UNIT_BYTES)
            return
        if call.name.startswith("dynamodb."):
            self._bill(usage, call, parsed)

    def _planned_writes(self, operation: str, request: Mapping[str, Any]) -> list[_Write]:
        planned: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, int]] = []
        if operation == "PutItem":
            item = request["Item"]
            planned.append(
                ("put", request["TableName"], self._items.key_of(request["TableName"], item), item, 1)
            )
        elif operation in ("UpdateItem", "DeleteItem"):
            kind = "update" if operation == "UpdateItem" else "delete"
            planned.append((kind, request["TableName"], request["Key"], None, 1))
        elif operation == "BatchWriteItem":
            for table, requests in request["RequestItems"].items():
                for entry in requests:
                    if "PutRequest" in entry:
                        item = entry["PutRequest"]["Item"]
                        planned.append(("put", table, self._items.key_of(table, item), item, 1))
                    else:
                        planned.append(("delete", table, entry["DeleteRequest"]["Key"], None, 1))
        elif operation == "TransactWriteItems":
            for entry in request["TransactItems"]:
                ((op, body),) = entry.items()
                table = body["TableName"]
                if op == "Put":
                    planned.append(("put", table, self._items.key_of(table, body["Item"]), body["Item"], 2))
                elif op in ("Update", "Delete"):
                    planned.append((op.lower(), table, body["Key"], None, 2))
                else:
                    planned.append(("check", table, body["Key"], None, 2))
        writes = []
        for kind, table, key, new_item, factor in planned:
            current = self._items.current(table, key)
            writes.append(_Write(table, key, kind, new_item, item_size(current or {}), factor, current))
        return writes

    def _bill(self, usage: Usage, call: _Call, parsed: Mapping[str, Any]) -> None:
        unprocessed = {
            (table, json.dumps(self._items.key_of(table, _request_item(entry)), sort_keys=True))
            for table, entries in parsed.get("UnprocessedItems", {}).items()
            for entry in entries
        }
        for write in call.writes:
            if (write.table, json.dumps(write.key, sort_keys=True)) in unprocessed:
                continue
            if write.kind == "check":
                usage.reads_by_table[write.table] += 1
                usage.read_units += write.factor * _units(write.before, READ_UNIT_BYTES)
                continue
            if write.kind == "put":
                after = item_size(write.new_item or {})
            elif write.kind == "update":
                after = item_size(self._items.current(write.table, write.key) or {})
            else:
                after = 0
            usage.items_written += 1
            usage.write_units += write.factor * _units(max(write.before, after), WRITE_UNIT_BYTES)
            after_item = write.new_item if write.kind == "put" else None
            usage.write_units += _index_units(write.before_item, after_item)
            due_units = 0 if write.kind == "update" else _due_index_units(write.before_item, after_item)
            usage.write_units += due_units
            usage.due_index_write_units += due_units
        self._bill_reads(usage, call, parsed)

    def _bill_reads(self, usage: Usage, call: _Call, parsed: Mapping[str, Any]) -> None:
        operation = call.name.split(".", 1)[1]
        request = call.request
        consistent = 1.0 if request.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            item = parsed.get("Item")
            usage.reads_by_table[request["TableName"]] += 1 if item else 0
            usage.read_units += consistent * _units(item_size(item or {}), READ_UNIT_BYTES)
        elif operation in ("Query", "Scan"):
            items = parsed.get("Items", [])
            usage.reads_by_table[request["TableName"]] += len(items)
            usage.read_units += consistent * _units(sum(item_size(i) for i in items), READ_UNIT_BYTES)
        elif operation == "BatchGetItem":
            for table, items in parsed.get("Responses", {}).items():
                factor = 1.0 if request["RequestItems"][table].get("ConsistentRead") else 0.5
                usage.reads_by_table[table] += len(items)
                usage.read_units += sum(factor * _units(item_size(i), READ_UNIT_BYTES) for i in items)
        elif operation == "TransactGetItems":
            for entry, response in zip(request["TransactItems"], parsed.get("Responses", []), strict=False):
                item = response.get("Item")
                usage.reads_by_table[entry["Get"]["TableName"]] += 1 if item else 0
                usage.read_units += 2 * _units(item_size(item or {}), READ_UNIT_BYTES)


def _index_units(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> int:
    """Write units the sparse ``pending`` index bills (projection ALL, items under 1 KB there)."""
    if before is not None and after is not None and "oq" in before and "oq" in after:
        if before == after:
            return 0
        return 1 if (before["oq"], before["od"]) == (after["oq"], after["od"]) else 2
    return int(before is not None and "oq" in before) + int(after is not None and "oq" in after)


def _due_index_units(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> int:
    """Write units the sparse, keys-only ``due`` index bills: nothing while ``wd`` stays as it was."""
    old = before.get("wd") if before is not None else None
    new = after.get("wd") if after is not None else None
    if old == new:
        return 0
    return int(old is not None) + int(new is not None)


def _request_item(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    if "PutRequest" in entry:
        item: Mapping[str, Any] = entry["PutRequest"]["Item"]
        return item
    key: Mapping[str, Any] = entry["DeleteRequest"]["Key"]
    return key
