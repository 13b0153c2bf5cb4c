"""An in-memory DynamoDB client for the evaluator's scaling bench, under the project's own adapters.

moto answers a query on an index by scanning the whole table, so 100,000 rollups cost minutes per
run; this stand-in keeps each partition's items apart and answers the few request shapes
:class:`~pia.timeseries.store.RollupStore` and :class:`~pia.timeseries.store.CoverageTable` send.
It is stricter than moto where the evaluator's bounds are concerned: a Query page ends at ``Limit``
items or at 1 MB of items (DynamoDB's rule), whichever comes first.

It counts what DynamoDB would bill, by the rules of :mod:`bench.metering`: items read and read units
(a Query page rounds its total up to 4 KB, an empty page included; a BatchGetItem each item;
eventually consistent: half), write
units per item (1 KB, the larger of before and after), and the keys-only ``due`` index's write units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from pia.aws.state_table import item_size

PAGE_BYTES = 1024 * 1024


@dataclass
class StandInUsage:
    items_read: int = 0
    read_units: float = 0.0
    items_written: int = 0
    write_units: int = 0
    due_index_write_units: int = 0
    queries: int = 0


@dataclass
class StandInDynamoDB:
    tables: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    usage: StandInUsage = field(default_factory=StandInUsage)

    def _partition(self, table: str, pk: str) -> dict[str, dict[str, Any]]:
        return self.tables.setdefault(table, {}).setdefault(pk, {})

    def _read(self, items: list[dict[str, Any]], *, page: bool) -> None:
        self.usage.items_read += len(items)
        if page:
            self.usage.read_units += 0.5 * max(1, math.ceil(sum(item_size(i) for i in items) / 4096))
        else:
            self.usage.read_units += sum(0.5 * max(1, math.ceil(item_size(i) / 4096)) for i in items)

    def _write(self, table: str, item: dict[str, Any]) -> None:
        stored = self._partition(table, item["pk"]["S"])
        before = stored.get(item["sk"]["S"])
        self.usage.items_written += 1
        self.usage.write_units += max(1, math.ceil(max(item_size(before or {}), item_size(item)) / 1024))
        old, new = (before or {}).get("wd"), item.get("wd")
        if old != new:
            units = int(old is not None) + int(new is not None)
            self.usage.due_index_write_units += units
            self.usage.write_units += units
        stored[item["sk"]["S"]] = item

    def put_item(self, **request: Any) -> dict[str, Any]:
        item = request["Item"]
        current = self._partition(request["TableName"], item["pk"]["S"]).get(item["sk"]["S"])
        condition = request.get("ConditionExpression", "")
        failed = (condition == "attribute_not_exists(pk)" and current is not None) or (
            condition == "v = :v"
            and (current is None or current["v"] != request["ExpressionAttributeValues"][":v"])
        )
        if failed:
            self.usage.write_units += 1
            error: dict[str, Any] = {
                "Error": {"Code": "ConditionalCheckFailedException", "Message": "failed"}
            }
            if current is not None:
                error["Item"] = current
            raise ClientError(error, "PutItem")  # type: ignore[arg-type]
        self._write(request["TableName"], item)
        return {}

    def get_item(self, **request: Any) -> dict[str, Any]:
        key = request["Key"]
        item = self._partition(request["TableName"], key["pk"]["S"]).get(key["sk"]["S"])
        if item is None:
            return {}
        self._read([item], page=False)
        return {"Item": item}

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        for table, entries in request["RequestItems"].items():
            for entry in entries:
                self._write(table, entry["PutRequest"]["Item"])
        return {"UnprocessedItems": {}}

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        responses: dict[str, list[dict[str, Any]]] = {}
        for table, wanted in request["RequestItems"].items():
            found = [
                item
                for key in wanted["Keys"]
                if (item := self._partition(table, key["pk"]["S"]).get(key["sk"]["S"])) is not None
            ]
            self._read(found, page=False)
            responses[table] = found
        return {"Responses": responses, "UnprocessedKeys": {}}

    def query(self, **request: Any) -> dict[str, Any]:
        self.usage.queries += 1
        values: Mapping[str, Any] = request["ExpressionAttributeValues"]
        condition: str = request["KeyConditionExpression"]
        index = request.get("IndexName")
        if index == "pending":
            self._read([], page=True)
            return {"Items": []}
        partition = self._partition(request["TableName"], values[":pk"]["S"])
        start = request.get("ExclusiveStartKey")
        if index == "due":
            limit_at = int(values[":t"]["N"])
            ordered = sorted(
                ((int(i["wd"]["N"]), sk), i)
                for sk, i in partition.items()
                if "wd" in i and int(i["wd"]["N"]) <= limit_at
            )
            after = (int(start["wd"]["N"]), start["sk"]["S"]) if start else None
            rows = [
                ({"pk": i["pk"], "sk": i["sk"], "wd": i["wd"]}, order)
                for order, i in ordered
                if after is None or order > after
            ]
        else:
            rows = [(partition[sk], (0, sk)) for sk in sorted(partition)]
            if "begins_with(sk, :g)" in condition:
                rows = [r for r in rows if r[1][1].startswith(values[":g"]["S"])]
            if start:
                rows = [r for r in rows if r[1][1] > start["sk"]["S"]]
        page: list[dict[str, Any]] = []
        size = 0
        limit = request.get("Limit", len(rows))
        for item, _ in rows:
            if len(page) == limit or size >= PAGE_BYTES:
                break
            page.append(item)
            size += item_size(item)
        self._read(page, page=True)
        response: dict[str, Any] = {"Items": page}
        if len(page) < len(rows):
            response["LastEvaluatedKey"] = {k: page[-1][k] for k in ("pk", "sk", "wd") if k in page[-1]}
        return response
