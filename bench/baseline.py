"""The straightforward per-event implementation the engine is measured against. Bench only.

For each record: read the rule, GetItem the user's aggregate, PutItem it back, and call Pinpoint
UpdateEndpoint whenever the rule holds. It decodes and evaluates with the same pia code as the
engine, so the difference measured is the architecture (per-event round trips against coalesced,
batched ones), not the parsing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from bench.scenario import user_id
from pia.core.actions import READY
from pia.core.events import Event, parse_event
from pia.rules.model import Rule
from pia.rules.ruleset import RulesetTable


def _key(rule_id: str, user: str) -> dict[str, Any]:
    return {"pk": {"S": f"B#{rule_id}"}, "sk": {"S": user}}


class NaiveAggregator:
    def __init__(self, dynamodb: Any, pinpoint: Any, ruleset_table: str, table: str, app_id: str) -> None:
        self._dynamodb = dynamodb
        self._pinpoint = pinpoint
        self._rules = RulesetTable(dynamodb, ruleset_table)
        self._table = table
        self._app_id = app_id
        self._rule_ids: set[str] = set()

    def handle(self, event: Mapping[str, Any]) -> None:
        for record in event["Records"]:
            parsed = parse_event(base64.b64decode(record["kinesis"]["data"]))
            if isinstance(parsed, Event):
                self._count(parsed)

    def _count(self, event: Event) -> None:
        ruleset = self._rules.current()
        for rule in ruleset.aggregator_rules.get(event.event_type, ()):
            if not rule.matches(event):
                continue
            self._rule_ids.add(rule.rule_id)
            key = _key(rule.rule_id, event.user_id)
            item = self._dynamodb.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            count = int(item["c"]["N"]) + 1 if item else 1
            total = Decimal(item["s"]["S"]) if item else Decimal(0)
            total += event.metric_for(rule.metric_name) or 0
            self._dynamodb.put_item(
                TableName=self._table, Item={**key, "c": {"N": str(count)}, "s": {"S": str(total)}}
            )
            if rule.is_met(count, total) and event.endpoint_id:
                self._pinpoint.update_endpoint(
                    ApplicationId=self._app_id,
                    EndpointId=event.endpoint_id,
                    EndpointRequest={
                        "User": {"UserId": event.user_id, "UserAttributes": {rule.output_name: [READY]}}
                    },
                )

    def counts(self, dynamodb: Any) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for rule_id in sorted(self._rule_ids):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": f"B#{rule_id}"}},
            }
            while True:
                page = dynamodb.query(**kwargs)
                found.extend((item["sk"]["S"], int(item["c"]["N"])) for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found


def seed_counters(
    dynamodb: Any, table: str, rule: Rule, earlier: Sequence[int], users: Iterable[int]
) -> None:
    """Write, for ``users``, the counts the naive loop would hold after the ``earlier`` stream."""
    counts: dict[int, int] = {}
    for user in earlier:
        counts[user] = counts.get(user, 0) + 1
    for user in users:
        if user in counts:
            dynamodb.put_item(
                TableName=table,
                Item={
                    **_key(rule.rule_id, user_id(user)),
                    "c": {"N": str(counts[user])},
                    "s": {"S": str(counts[user])},
                },
            )
