"""The rules and the random event mix every scenario draws from.

The rules cover each semantic the engine must keep exact under faults: a sticky attribute, a
count that resets on ``equal``, a metric sum that resets, an attribute filter, a count-and-sum
rule, and a sum of the event's only metric (events with two metrics add nothing to it).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

from tests.reliability.reference import ReferenceModel, RuleSpec, StreamEvent

CATALOG = (
    RuleSpec("trk_clicker", "click", count=("greater", 3)),
    RuleSpec("trk_course_x3", "course", count=("equal", 3), reset=True),
    RuleSpec("trk_spend_10", "buy", total=("greater_or_equal", "10"), reset=True, metric="amount"),
    RuleSpec("trk_red_x2", "click", count=("greater_or_equal", 2), reset=True, attribute=("color", "red")),
    RuleSpec("trk_buyer", "buy", count=("greater", 1), total=("greater", "5"), metric="amount"),
    RuleSpec("trk_watch", "view", total=("greater", "2.5"), reset=True),
)
EVENT_TYPES = (
    ("click", 30),
    ("course", 20),
    ("buy", 20),
    ("view", 12),
    ("scroll", 8),
    ("_session.start", 5),
    ("trk_course_x3", 3),
)
AMOUNTS = (0.5, 1.0, 2.5, 4.0, 4.5, 1.25)


def users(rng: random.Random, most: int = 6) -> list[str]:
    return [f"user-{i:03d}" for i in range(rng.randint(1, most))]


def random_events(rng: random.Random, people: Sequence[str], count: int, first: int = 0) -> list[StreamEvent]:
    names = [n for n, _ in EVENT_TYPES]
    weights = [w for _, w in EVENT_TYPES]
    events: list[StreamEvent] = []
    for n in range(first, first + count):
        event_type = rng.choices(names, weights)[0]
        user = None if rng.random() < 0.03 else rng.choice(people)
        attributes: dict[str, str] = {}
        metrics: dict[str, Decimal] = {}
        if event_type == "click":
            attributes["color"] = rng.choice(("red", "blue", "Red"))
        elif event_type == "buy":
            metrics["amount"] = Decimal(str(rng.choice(AMOUNTS)))
            if rng.random() < 0.3:
                metrics["items"] = Decimal(rng.randint(1, 3))
        elif event_type == "view":
            metrics["seconds"] = Decimal(str(rng.choice((0.5, 1.0, 1.5))))
            if rng.random() < 0.2:
                metrics["scrolls"] = Decimal(2)
        events.append(StreamEvent(user, event_type, n, attributes, metrics))
    return events


def reference_for(
    positions: Iterable[tuple[str, int, StreamEvent]],
    specs: Sequence[RuleSpec] = CATALOG,
    zone: ZoneInfo | None = None,
) -> ReferenceModel:
    """The sequential model fed in the given order (stream order within each lane)."""
    model = ReferenceModel(zone)
    for lane, sequence, event in positions:
        model.feed(specs, lane, sequence, event)
    return model
