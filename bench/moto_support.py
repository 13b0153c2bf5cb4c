"""What the bench needs from in-process moto besides the emulator's own helpers: tables, and a look
at stored items.

The look at stored items is how write units are computed: DynamoDB bills a write by the larger of the
item before and after it, and moto's ConsumedCapacity is unreliable for transactions. Looking does
not go through botocore, so it is never counted as a call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends

REGION = "us-east-1"


class MotoItems:
    """Reads moto's own state, outside botocore, to size items before and after a metered write."""

    def __init__(self, region: str = REGION, account: str = DEFAULT_ACCOUNT_ID) -> None:
        self._region = region
        self._account = account

    def _backend(self) -> DynamoDBBackend:
        return dynamodb_backends[self._account][self._region]

    def key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        moto_table = self._backend().get_table(table)
        names = [moto_table.hash_key_attr]
        if moto_table.range_key_attr is not None:
            names.append(moto_table.range_key_attr)
        return {name: item[name] for name in names}

    def current(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        item = self._backend().get_item(table, dict(key))
        if item is None:
            return None
        attributes: dict[str, Any] = item.to_json()["Attributes"]
        return attributes
