"""What the engine has seen in a day: event names, and the values of each event's attributes.

The rule poller compares a marketer's rules with it to warn about near misses (``GreenButton`` when
the app sends ``greenbutton``). It is bounded so that one day's summary always fits a DynamoDB item,
whatever the cardinality of the attributes: a value that arrives once a cap is reached is left out,
which at worst costs a warning, never a rule.

The byte budget is counted as the item stores it, UTF-8 JSON: a name of 50 four-byte characters
costs 202 bytes, a control character six (``\u0001``). Counting characters let 4-byte names build
an 813 KB item, twice DynamoDB's limit, and the evaluator failed at the end of every run.
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


_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _stored_bytes(text: str) -> int:
    """The bytes ``dumps`` writes for a string: quoted, escaped, UTF-8."""
    return len(_ENCODER.encode(text).encode())


@dataclass
class SeenSummary:
    """``size`` is an upper bound on the UTF-8 bytes of :meth:`dumps`: each name is charged its quoted
    text plus ``:``, its brackets and a comma; each value its quoted text and a comma."""

    events: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    size: int = 2

    def add(self, event: Event) -> None:
        self.add_values(event.event_type, event.attributes)

    def add_values(self, event_name: str, attributes: Mapping[str, str]) -> None:
        names = self.events.get(event_name)
        if names is None:
            cost = _stored_bytes(event_name) + 4
            if len(self.events) >= MAX_EVENT_NAMES or self.size + cost > MAX_BYTES:
                return
            names = self.events[event_name] = {}
            self.size += cost
        for attribute, value in attributes.items():
            values = names.get(attribute)
            if values is None:
                cost = _stored_bytes(attribute) + 4
                if len(names) >= MAX_ATTRIBUTES_PER_EVENT or self.size + cost > MAX_BYTES:
                    continue
                values = names[attribute] = set()
                self.size += cost
            if value in values or len(values) >= MAX_VALUES_PER_ATTRIBUTE:
                continue
            cost = _stored_bytes(value) + 1
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
