"""Delivers what state items still owe after the invocation that committed it handed it over.

An item owes an action to the relay when a target refused it (retried with backoff), when a newer
value had to wait for an older one in flight, or when the scheduled evaluator published it. Such an
item is in the sparse ``pending`` index from its due time on; the relay reads that index in bounded
pages, claims each item with the same conditional write as every other state change (so a relay and
an aggregator never both send one action), sends, and clears, page by page. After ``MAX_ATTEMPTS``
refusals an action is parked for an operator, with the ``ActionsParked`` metric and its alarm.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pia.core.actions import ActionTarget
from pia.core.state import (
    UNCACHED,
    Change,
    CommitSettings,
    ParkingPort,
    Pending,
    StateItem,
    StatePort,
    commit_loop,
    send_and_clear,
)

LEASE_SECONDS = 120
"""How long a claim holds an item: longer than one page's send and clear."""
PAGE_SIZE = 50
MAX_ITEMS_PER_RUN = 2_000
"""A run stops here and leaves the rest to the next minute's run, well inside its timeout."""

K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=StateItem)


class DueItems(StatePort[K, S], ParkingPort, Protocol):
    """A table of state items with the relay's view of it."""

    def due_page(
        self, partition: str, now: int, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[S], dict[str, Any] | None]: ...

    def key_for(self, state: S) -> K: ...


class RelayFailed(RuntimeError):
    """The relay could not claim what it found due (the reasons DynamoDB gave)."""


@dataclass
class RelayReport:
    pending: int = 0
    delivered: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    parked: list[Pending] = field(default_factory=list)
    pages: int = 0

    def add(self, other: RelayReport) -> None:
        self.pending += other.pending
        self.delivered += other.delivered
        self.failed.update(other.failed)
        self.parked.extend(other.parked)
        self.pages += other.pages


def relay_due(
    table: DueItems[K, S],
    targets: Sequence[ActionTarget],
    now: int,
    partitions: Sequence[str],
    *,
    page_size: int | None = None,
    max_items: int = MAX_ITEMS_PER_RUN,
    settings: CommitSettings = UNCACHED,
) -> RelayReport:
    """Claim, send and clear what is due, one page at a time, each page sent before the next is read."""
    page_size = page_size or PAGE_SIZE
    report = RelayReport()
    seen = 0
    for partition in partitions:
        start: dict[str, Any] | None = None
        while seen < max_items:
            states, start = table.due_page(partition, now, min(page_size, max_items - seen), start)
            report.pages += 1
            seen += len(states)
            if states:
                _relay_page(table, {table.key_for(s): s for s in states}, targets, now, report, settings)
            if not start:
                break
    return report


def _relay_page(
    table: DueItems[K, S],
    states: Mapping[K, S],
    targets: Sequence[ActionTarget],
    now: int,
    report: RelayReport,
    settings: CommitSettings,
) -> None:
    def claim(key: K, state: S, retry: bool) -> Change[S] | None:
        if not state.pending or state.due == 0 or state.due > now:
            return None
        return Change(state.with_outbox(state.pending, now + LEASE_SECONDS))

    claimed = commit_loop(states, claim, table, base=lambda key: states[key], now=now, settings=settings)
    if claimed.failed:
        # A claim the table refuses for good (not a conflict: access, validation) fails the run
        # loudly; the scheduler runs the next one, and nothing was sent twice.
        raise RelayFailed("; ".join(sorted(set(claimed.failed.values()))[:3]))
    owed = {key: state.pending for key, state in claimed.states.items()}
    report.pending += sum(len(p) for p in owed.values())
    sent = send_and_clear(
        owed,
        claimed.states,
        targets,
        table,
        table,
        now=now,
        settings=settings,
        base=lambda key: claimed.states[key],
    )
    report.delivered += len(sent.delivered)
    report.failed.update(
        {f"{action_id}#{name}": reason for (action_id, name), reason in sent.deferred.items()}
    )
    report.parked.extend(sent.parked)
