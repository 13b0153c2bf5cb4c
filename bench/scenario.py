"""The workloads: users x events of one custom event, shuffled, cut into Lambda-shaped Kinesis batches."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

from pia.rules.ruleset import Ruleset
from pia.rules.table import parse_rules
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
        return len(self.stream())

    def stream(self) -> list[int]:
        """The user of each record, in stream order."""
        order = [u for u in range(self.users) for _ in range(self.events_per_user)]
        random.Random(self.seed).shuffle(order)
        return order

    def times_ms(self) -> list[int]:
        """When each record arrived: one a second."""
        return [START_MS + i * 1_000 for i in range(len(self.stream()))]

    def cuts(self) -> list[tuple[int, int]]:
        """Where Lambda cuts the stream into batches: every ``batch_size`` records."""
        n = len(self.stream())
        return [(start, min(n, start + self.batch_size)) for start in range(0, n, self.batch_size)]

    def records(self) -> list[StreamRecord]:
        return [
            StreamRecord(
                data=pinpoint_record(user, at),
                sequence_number=sequence(i + 1),
                partition_key=endpoint_id(user),
            )
            for i, (user, at) in enumerate(zip(self.stream(), self.times_ms(), strict=True))
        ]

    def batches(self) -> Iterator[dict[str, Any]]:
        records = self.records()
        for start, end in self.cuts():
            yield kinesis_event(records[start:end])

    def per_user(self) -> Counter[int]:
        return Counter(self.stream())

    def crossings(self) -> int:
        """Threshold crossings one-at-a-time semantics produce: each user whose count passes the target."""
        return sum(1 for n in self.per_user().values() if n > COUNT_TARGET)

    def holds(self) -> int:
        """Events after which the rule holds (count > target): what a naive loop sends to Pinpoint."""
        return sum(max(0, n - COUNT_TARGET) for n in self.per_user().values())

    def expected_counts(self, *, settles: bool) -> dict[str, int]:
        """Each user's count: every event, or (``settles``) up to the crossing, after which the
        ``reset = no`` rule's counter is settled and never written again."""
        return {user_id(u): min(n, COUNT_TARGET + 1) if settles else n for u, n in self.per_user().items()}


CANONICAL = Scenario("canonical", users=100, events_per_user=10)
TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


def deployed_default(parameter: str) -> int:
    """A template.yaml parameter's default: the bench runs what a stack deploys, read from the one place
    that says it."""
    return int(yaml_parse(TEMPLATE.read_text())["Parameters"][parameter]["Default"])


DEPLOYED_BATCH_SIZE = deployed_default("BatchSize")
DEPLOYED_WINDOW_SECONDS = deployed_default("MaximumBatchingWindowInSeconds")

SESSION_LENGTHS = (5, 30)
SESSION_MINUTES = (1, 5)
SESSIONS_PER_USER: tuple[tuple[int, float], ...] = ((0, 0.45), (1, 0.35), (2, 0.15), (3, 0.05))
"""A day's mix: nearly half the users idle, most of the rest with one session, a few with several."""


@dataclass(frozen=True)
class Sessions(Scenario):
    """1,000 users in sessions of 5 to 30 events within a few minutes, a day's mix of active and idle
    users, cut into batches as the event source mapping does (``batch_size`` records or
    ``window_seconds``, whichever comes first), at a stream rate of ``records_per_second``.

    The quiet level spreads the day's sessions so that a batch of 100 spans minutes and a session
    mostly falls in one batch. The busy level is a shard at 1,000 records per second: a batch of 100
    spans a tenth of a second, and a user's next event (seconds later) is always in a later batch."""

    events_per_user: int = 0
    records_per_second: float = 1.0
    window_seconds: float = 300.0

    def _sessions(self) -> list[tuple[int, int, float, float]]:
        """(user, events, start second, seconds between events), one per session."""
        rng = random.Random(self.seed)
        counts = [n for n, _ in SESSIONS_PER_USER]
        weights = [w for _, w in SESSIONS_PER_USER]
        sessions: list[tuple[int, int, float, float]] = []
        for user in range(self.users):
            for _ in range(rng.choices(counts, weights)[0]):
                length = rng.randint(*SESSION_LENGTHS)
                minutes = rng.uniform(*SESSION_MINUTES)
                sessions.append((user, length, rng.random(), minutes * 60.0 / length))
        return sessions

    def _timeline(self) -> list[tuple[float, int]]:
        sessions = self._sessions()
        total = sum(length for _, length, _, _ in sessions)
        if self.records_per_second >= 100:
            # Busy shard: thousands of concurrent users, of whom these are a sample; a user's events
            # are seconds apart, so between two of them the shard carries thousands of records.
            order: list[tuple[float, int]] = []
            step = 1 / self.records_per_second
            for j in range(max(length for _, length, _, _ in sessions)):
                for user, length, _, _ in sessions:
                    if j < length:
                        order.append((len(order) * step, user))
            return order
        span = total / self.records_per_second
        events = [
            (start * span + k * gap, user) for user, length, start, gap in sessions for k in range(length)
        ]
        return sorted(events)

    def stream(self) -> list[int]:
        return [user for _, user in self._timeline()]

    def times_ms(self) -> list[int]:
        return [START_MS + int(at * 1000) for at, _ in self._timeline()]

    def cuts(self) -> list[tuple[int, int]]:
        times = [at for at, _ in self._timeline()]
        cuts: list[tuple[int, int]] = []
        start = 0
        while start < len(times):
            end = start + 1
            while (
                end < len(times)
                and end - start < self.batch_size
                and times[end] - times[start] <= self.window_seconds
            ):
                end += 1
            cuts.append((start, end))
            start = end
        return cuts


@dataclass(frozen=True)
class Floor:
    """What the scenario itself says the exactly-once path must write, from the rule's semantics and
    the batch cuts alone (never from the code under test)."""

    events: int
    unsettled_changes: int
    """Per batch, the distinct users whose counter changes while not yet settled: a ``reset = no``
    rule's count moves until it passes the target, and each such change must be durable before
    Lambda moves past its batch (one write per counter per batch)."""
    batches_with_crossings: int
    """Batches in which some counter crosses: each sends its actions and writes one sent mark."""

    @property
    def per_event(self) -> float:
        return self.unsettled_changes / self.events

    @property
    def with_sent_marks_per_event(self) -> float:
        return (self.unsettled_changes + self.batches_with_crossings) / self.events


def floor(scenario: Scenario) -> Floor:
    stream = scenario.stream()
    counts: Counter[int] = Counter()
    changes = crossing_batches = 0
    for start, end in scenario.cuts():
        users = stream[start:end]
        unsettled = {u for u in users if counts[u] <= COUNT_TARGET}
        crossed = False
        for u in users:
            before = counts[u]
            counts[u] += 1
            crossed = crossed or (before <= COUNT_TARGET < counts[u])
        changes += len(unsettled)
        crossing_batches += crossed
    return Floor(len(stream), changes, crossing_batches)


def batch_delays(scenario: Scenario) -> tuple[float, float]:
    """Mean and largest seconds from a record's arrival to its batch's invocation: a full batch is
    invoked at its last record, one the window cuts when the window runs out after its first."""
    times = [ms / 1000 for ms in scenario.times_ms()]
    window = getattr(scenario, "window_seconds", 0.0)
    size = scenario.batch_size
    delays: list[float] = []
    for start, end in scenario.cuts():
        invoked = times[end - 1] if end - start >= size else times[start] + window
        delays.extend(invoked - t for t in times[start:end])
    return sum(delays) / len(delays), max(delays)
