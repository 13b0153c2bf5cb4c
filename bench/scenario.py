"""The workloads: users x events of one custom event, shuffled, cut into Lambda-shaped Kinesis batches."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pia.rules.model import parse_rules
from pia.rules.ruleset import Ruleset
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data, sequence

EVENT_NAME = "greenbutton"
METRIC_NAME = "clicks"
APP_ID = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
START_MS = 1_795_165_200_000
RULE_ROW: dict[str, object] = {
    "RuleType": "aggregator",
    "EventName": EVENT_NAME,
    "AttributeName": "na",
    "AttributeValue": "na",
    "Operator-C": "greater",
    "Target-C": "5",
    "Operator-V": "na",
    "Target-V": "999",
    "ResetWhenReachTarget": "no",
    "StartDate": "9999-99-99",
    "FinishDate": "9999-99-99",
}
COUNT_TARGET = 5


def bench_ruleset(published: datetime | None = None) -> Ruleset:
    """The one aggregate rule of the scenario (count greater 5, reset no), compiled as the poller would."""
    parsed = parse_rules([(2, RULE_ROW)])
    if parsed.errors:
        raise ValueError(f"bench rule does not parse: {parsed.errors}")
    moment = published or datetime.now(UTC)
    return Ruleset(version=1, rules=parsed.rules, published_at=moment.isoformat(), source="bench")


def user_id(n: int) -> str:
    return f"user-{n:05d}"


def endpoint_id(n: int) -> str:
    return f"ep-{n:05d}-android"


def pinpoint_record(user: int, at_ms: int) -> bytes:
    """One record as Pinpoint's event stream writes it (same shape and size as events/kinesis-batch.json)."""
    return record_data(
        {
            "event_type": EVENT_NAME,
            "event_timestamp": at_ms,
            "arrival_timestamp": at_ms + 812,
            "event_version": "3.1",
            "application": {
                "app_id": APP_ID,
                "cognito_identity_pool_id": "us-east-1:4f1e1f1a-0000-4c3b-9a6e-3b2c1d0e9f8a",
                "sdk": {"name": "aws-amplify", "version": "6.3.2"},
                "package_name": "com.example.shop",
                "title": "Example Shop",
                "version_name": "2.4.0",
                "version_code": "240",
            },
            "client": {"client_id": endpoint_id(user), "cognito_id": f"us-east-1:{user:08d}-0000-4f5e-8d7c"},
            "device": {
                "locale": {"code": "en_US", "country": "US", "language": "en"},
                "make": "Google",
                "model": "Pixel 8",
                "platform": {"name": "android", "version": "14"},
            },
            "session": {
                "session_id": f"{user:08d}-0f9e-4d8c-b7a6-123456789abc",
                "start_timestamp": at_ms - 60_000,
            },
            "attributes": {"screen": "home"},
            "metrics": {METRIC_NAME: 1},
            "endpoint": {
                "ChannelType": "GCM",
                "EndpointStatus": "ACTIVE",
                "OptOut": "NONE",
                "EffectiveDate": "2026-11-20T09:00:00.000Z",
                "Demographic": {"Make": "Google", "Model": "Pixel 8", "Platform": "android"},
                "User": {"UserId": user_id(user)},
            },
            "awsAccountId": "123456789012",
        }
    )


@dataclass(frozen=True)
class Scenario:
    """``users`` x ``events_per_user`` events, shuffled with a fixed seed, in batches of ``batch_size``."""

    name: str
    users: int
    events_per_user: int
    batch_size: int = 100
    seed: int = 20_260_101

    @property
    def events(self) -> int:
        return self.users * self.events_per_user

    @property
    def batch_count(self) -> int:
        return -(-self.events // self.batch_size)

    def stream(self) -> list[int]:
        """The user of each record, in stream order."""
        order = [u for u in range(self.users) for _ in range(self.events_per_user)]
        random.Random(self.seed).shuffle(order)
        return order

    def records(self) -> list[StreamRecord]:
        return [
            StreamRecord(
                data=pinpoint_record(user, START_MS + i * 1_000),
                sequence_number=sequence(i + 1),
                partition_key=endpoint_id(user),
            )
            for i, user in enumerate(self.stream())
        ]

    def batches(self) -> Iterator[dict[str, Any]]:
        records = self.records()
        for start in range(0, len(records), self.batch_size):
            yield kinesis_event(records[start : start + self.batch_size])

    def crossings(self) -> int:
        """Threshold crossings one-at-a-time semantics produce: each user whose count passes the target."""
        return self.users if self.events_per_user > COUNT_TARGET else 0

    def holds(self) -> int:
        """Events after which the rule holds (count > target): what a naive loop sends to Pinpoint."""
        return self.users * max(0, self.events_per_user - COUNT_TARGET)


CANONICAL = Scenario("canonical", users=100, events_per_user=10)
