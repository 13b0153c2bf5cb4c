"""What the engine has seen in a day: event names, and the values of each event's attributes.

The rule poller compares a marketer's rules with it to warn about near misses (``GreenButton`` when
the app sends ``greenbutton``). It is bounded so that one day's summary always fits a DynamoDB item,
whatever the cardinality of the attributes: a value that arrives once a cap is reached is left out,
which at worst costs a warning, never a rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pia.core.events import Event

MAX_EVENT_NAMES = 1_000
MAX_ATTRIBUTES_PER_EVENT = 50
MAX_VALUES_PER_ATTRIBUTE = 100
MAX_BYTES = 300_000


@dataclass
class SeenSummary:
    events: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    size: int = 0

    def add(self, event: Event) -> None:
        self.add_values(event.event_type, event.attributes)

    def add_values(self, event_name: str, attributes: Mapping[str, str]) -> None:
        names = self.events.get(event_name)
        if names is None:
            if len(self.events) >= MAX_EVENT_NAMES or self.size + len(event_name) + 8 > MAX_BYTES:
                return
            names = self.events[event_name] = {}
            self.size += len(event_name) + 8
        for attribute, value in attributes.items():
            values = names.get(attribute)
            if values is None:
                if len(names) >= MAX_ATTRIBUTES_PER_EVENT or self.size + len(attribute) + 8 > MAX_BYTES:
                    continue
                values = names[attribute] = set()
                self.size += len(attribute) + 8
            if value in values or len(values) >= MAX_VALUES_PER_ATTRIBUTE:
                continue
            cost = len(value.encode()) + 4
            if self.size + cost > MAX_BYTES:
                continue
            values.add(value)
            self.size += cost

    def merge(self, other: SeenSummary) -> None:
        for event_name, attributes in other.events.items():
            self.add_values(event_name, {})
            for attribute, values in attributes.items():
                for value in sorted(values):
                    self.add_values(event_name, {attribute: value})

    def dumps(self) -> str:
        body = {e: {a: sorted(v) for a, v in attrs.items()} for e, attrs in sorted(self.events.items())}
        return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

    @staticmethod
    def loads(text: str) -> SeenSummary:
        summary = SeenSummary()
        data: dict[str, dict[str, list[Any]]] = json.loads(text)
        for event_name, attributes in data.items():
            summary.add_values(event_name, {})
            for attribute, values in attributes.items():
                for value in values:
                    summary.add_values(event_name, {attribute: str(value)})
        return summary
