"""The one exactly-once state path: write, conflict, recompute, retry; one cache; one send-and-clear.

Counters, real-time rollups, the evaluator's rollup state and the relay all change state the same
way, and each supplies only its own transition:

- a state item holds what it counts *and* the actions it owes (``pending``), so one conditional
  write of one item commits both: no transaction, one write unit for an item under 1 KB;
- every write is conditional on the version this process last saw; on a conflict the store hands
  back the item as it is now and the transition runs again on it (``retry``), never a read;
- after a commit the new actions are sent, and what a target accepted is cleared from the item
  with the same loop. What it refused stays, made visible to the relay (``due``), with a bounded
  number of attempts before it is parked for an operator.

Who sends a pending action is decided by ``due``: 0 means the invocation that committed it owns it
(and, if that invocation dies, the redelivery of the same records finds it again); a positive
``due`` hands it to the relay from that time on. A newer value for the same user, rule and target
supersedes an older pending one in the item itself, so a stale value can never be sent after a
newer one; when the older one may already be in flight elsewhere, the newer one is left to the relay
(due after the in-flight sender is surely done), which keeps the order in which values occurred.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, Self, TypeVar

from pia.core.actions import Action, ActionKind, ActionTarget
from pia.core.delivery import OutboxEntry, deliver


class WriteStatus(StrEnum):
    COMMITTED = "committed"
    CONFLICT = "conflict"
    FAILED = "failed"


MAX_ATTEMPTS = 8
"""Deliveries a target may refuse before the action is parked: about a day of relay backoff."""
MAX_PENDING = 25
"""Actions one state item may owe at once. Beyond it the oldest are parked: an item stays small
(and its writes cheap) whatever a target does, and a hostile user cannot grow it without bound."""
BACKOFF_SECONDS = (60, 120, 300, 900, 1_800, 3_600, 7_200, 14_400)


@dataclass(frozen=True)
class Pending:
    """An action an item owes a target, with the refusals so far."""

    action: Action
    target: str
    attempts: int = 0
    reason: str = ""
    sequence: int = 0
    """The highest stream sequence, in the action's lane, of the records that produced it (0: not
    from a stream). Once that lane delivers a batch starting after it, the invocation that committed
    the action has returned, so the action was delivered or handed to the relay (see
    :func:`delivered_before`)."""

    @property
    def slot(self) -> str:
        """What a newer action replaces: an attribute's value per rule and target; every fired event
        is its own."""
        if self.action.kind is ActionKind.SET_ATTRIBUTE:
            return f"{self.action.rule_id}/{self.target}"
        return f"{self.action.action_id}/{self.target}"

    @property
    def entry(self) -> OutboxEntry:
        return OutboxEntry(self.action, self.target)


class StateItem(Protocol):
    """What the path needs of a state: its version and its outbox."""

    @property
    def version(self) -> int: ...

    @property
    def pending(self) -> tuple[Pending, ...]: ...

    @property
    def due(self) -> int: ...

    def with_outbox(self, pending: tuple[Pending, ...], due: int) -> Self: ...

    def with_version(self, version: int) -> Self: ...


K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=StateItem)


@dataclass(frozen=True)
class StateWrite(Generic[K, S]):
    key: K
    state: S
    expected_version: int
    previous: S | None = None
    """The state this write replaces, as this process knows it (what the stored item holds when the
    version condition holds): a store that updates attributes in place removes what it no longer has."""


@dataclass
class StateCommit(Generic[K, S]):
    """Per key: committed, conflicting (with the item as it is now, ``None`` if it is gone), or failed."""

    status: dict[K, WriteStatus] = field(default_factory=dict)
    current: dict[K, S | None] = field(default_factory=dict)
    reasons: dict[K, str] = field(default_factory=dict)


class StatePort(Protocol[K, S]):
    """A table of state items: one conditional write per item, no reads."""

    def commit(self, writes: Sequence[StateWrite[K, S]], now: int) -> StateCommit[K, S]: ...


class ParkingPort(Protocol):
    def park(self, entries: Sequence[Pending], now: int) -> None: ...


class StateCache:
    """Last committed state per item, so a warm container writes without reading: one cache for every
    kind of state, sized from the function's memory, least recently used evicted first.

    ``capacity`` counts states of :data:`BYTES_PER_CACHED_STATE`; a state that holds more (a rollup
    with hundreds of days, a full distinct set) says how many such units it weighs in its
    ``cache_weight``, so a cache of long rollups stays within the memory it was sized from."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._weight = 0

    def get(self, kind: str, key: Hashable) -> Any:
        entry = self._items.get((kind, key))
        if entry is None:
            return None
        self._items.move_to_end((kind, key))
        return entry[0]

    def put(self, kind: str, key: Hashable, state: object) -> None:
        weight = max(1, int(getattr(state, "cache_weight", 1)))
        self.drop(kind, key)
        self._items[(kind, key)] = (state, weight)
        self._weight += weight
        while self._weight > self.capacity and len(self._items) > 1:
            _, (_, evicted) = self._items.popitem(last=False)
            self._weight -= evicted

    def drop(self, kind: str, key: Hashable) -> None:
        entry = self._items.pop((kind, key), None)
        if entry is not None:
            self._weight -= entry[1]

    def clear(self) -> None:
        self._items.clear()
        self._weight = 0

    def __len__(self) -> int:
        return len(self._items)


BYTES_PER_CACHED_STATE = 6_000
"""Measured by ``make bench`` (peak RSS of a warm aggregator): a cached counter or rollup with its
lane marks, endpoints and recent ids, in CPython objects, plus the cache's own bookkeeping."""
RESERVED_MB = 160
"""What the runtime, boto3, Powertools and one batch in flight need before any state is cached."""


def cache_capacity(memory_mb: int) -> int:
    """How many states fit in the function's memory beside everything else it holds."""
    return max(1_000, (memory_mb - RESERVED_MB) * 1024 * 1024 // BYTES_PER_CACHED_STATE)


Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CommitSettings:
    """How one container commits state. Built once at cold start (:meth:`pia.aws.wiring.Wiring.commit`)
    and handed to each of its writers, so the counters and the rollups of one batch share one clock,
    one lane retention, one cache and one hand-over, and a test or the bench sets them in one place."""

    clock: Clock = system_clock
    lane_retention_seconds: int = 90_000
    """How long a lane's dedupe mark lives: past the oldest record Lambda may still redeliver (the
    aggregator's is :attr:`pia.settings.AggregatorSettings.lane_retention_seconds`)."""
    cache: StateCache | None = None
    """Last committed state per item, for a warm container to write without reading; ``None`` where
    each run reads its items anyway (the evaluator, the relay)."""
    max_rounds: int = 6
    """Rounds of write, conflict and recompute before a key is reported failed (and redelivered)."""
    hand_over_seconds: int = 300
    """From when the relay may send what a committing invocation left to it."""


UNCACHED = CommitSettings()


@dataclass(frozen=True)
class Change(Generic[S]):
    """A transition's result: the next state (its version is set by the loop) and the entries of it
    this caller should send now (empty when they are left to the relay)."""

    state: S
    send: tuple[Pending, ...] = ()
    note: Any = None


Transition = Callable[[K, S, bool], "Change[S] | None"]
"""``(key, state, retry)``: the change to write, or ``None`` when nothing changes. ``retry`` is true
when ``state`` is the item as another writer left it after a conflict."""


@dataclass
class Committed(Generic[K, S]):
    states: dict[K, S] = field(default_factory=dict)
    changes: dict[K, Change[S]] = field(default_factory=dict)
    unchanged: dict[K, S] = field(default_factory=dict)
    failed: dict[K, str] = field(default_factory=dict)
    conflicts: int = 0


def commit_loop(
    keys: Iterable[K],
    transition: Transition[K, S],
    store: StatePort[K, S],
    *,
    base: Callable[[K], S],
    now: int,
    settings: CommitSettings = UNCACHED,
    kind: str = "",
) -> Committed[K, S]:
    """The one loop of write, conflict, recompute and retry. ``base`` gives a key's state when the
    cache has none (a fresh state, or one the caller read)."""
    cache = settings.cache
    result: Committed[K, S] = Committed()
    states: dict[K, S] = {}
    for key in keys:
        cached = cache.get(kind, key) if cache is not None else None
        states[key] = cached if cached is not None else base(key)
    retry = False
    for _ in range(settings.max_rounds):
        writes: list[StateWrite[K, S]] = []
        planned: dict[K, Change[S]] = {}
        for key, state in states.items():
            change = transition(key, state, retry)
            if change is None:
                result.unchanged[key] = state
                if retry and cache is not None:
                    cache.put(kind, key, state)
                continue
            writes.append(StateWrite(key, change.state.with_version(state.version + 1), state.version, state))
            planned[key] = change
        states = {}
        if not writes:
            return result
        outcome = store.commit(writes, now)
        for write in writes:
            status = outcome.status.get(write.key, WriteStatus.FAILED)
            if status is WriteStatus.COMMITTED:
                result.states[write.key] = write.state
                result.changes[write.key] = planned[write.key]
                if cache is not None:
                    cache.put(kind, write.key, write.state)
            elif status is WriteStatus.CONFLICT:
                result.conflicts += 1
                current = outcome.current.get(write.key)
                states[write.key] = current if current is not None else base(write.key)
                if cache is not None:
                    cache.drop(kind, write.key)
            else:
                result.failed[write.key] = outcome.reasons.get(write.key, "write failed")
        retry = True
        if not states:
            return result
    for key in states:
        result.failed[key] = "still conflicting after repeated attempts"
    return result


def owe(
    state: S,
    actions: Sequence[Action],
    targets: Sequence[str],
    *,
    lanes: Collection[str],
    now: int,
    hand_over: int,
    publish: bool = False,
    sequences: Mapping[str, int] | None = None,
) -> Change[S]:
    """``state`` with ``actions`` added to what it owes, each newer value superseding an older one for
    the same rule and target. They are for this caller to send at once, unless the relay already
    holds the item (``due``) or an older value they replace may be in flight from another lane: then
    the relay sends them, from ``hand_over`` seconds on, after whatever is in flight. ``publish``
    shows them to the relay from ``hand_over`` on even when sent at once: for a caller whose crash no
    redelivery would repair (the scheduled evaluator). ``sequences`` (lane -> the highest sequence of
    the records this change applies) lets a later batch of the lane prove them delivered."""
    top = sequences or {}
    new = [
        Pending(action, target, sequence=top.get(action.lane, 0)) for action in actions for target in targets
    ]
    slots = {p.slot for p in new}
    kept = [p for p in state.pending if p.slot not in slots]
    superseded_elsewhere = any(p.slot in slots and p.action.lane not in lanes for p in state.pending)
    pending = tuple(kept + new)
    parked: tuple[Pending, ...] = ()
    if len(pending) > MAX_PENDING:
        parked, pending = pending[: len(pending) - MAX_PENDING], pending[len(pending) - MAX_PENDING :]
    held = state.due != 0 or (bool(new) and superseded_elsewhere)
    due = state.due
    if new and due == 0 and (superseded_elsewhere or publish):
        due = now + hand_over
    send = () if held else tuple(p for p in new if p in pending)
    return Change(state.with_outbox(pending, due), send=send, note=parked)


def delivered_before(entry: Pending, starts: Mapping[str, int]) -> bool:
    """Whether an entry an item still holds is surely delivered, with no write to say so.

    Lambda hands a lane a batch that starts after a record only once the invocation that had that
    record has returned (a crash or an error redelivers from it, and a reported failure from the
    lowest failed record). An invocation that returns has run its send step: what a target refused
    is rewritten with a ``due`` for the relay, and what it did not refuse was delivered. So an entry
    of an item no relay holds, whose records all precede the start of this batch in the same lane,
    was delivered; the writer that dropped it need not have spent a write on clearing it.
    """
    start = starts.get(entry.action.lane)
    return bool(entry.sequence) and start is not None and entry.sequence < start


def without_delivered(state: S, starts: Mapping[str, int]) -> S:
    """``state`` without the entries :func:`delivered_before` proves delivered (only when no relay
    holds the item: a ``due`` item's entries are the relay's to clear)."""
    if state.due or not state.pending:
        return state
    kept = tuple(p for p in state.pending if not delivered_before(p, starts))
    return state if len(kept) == len(state.pending) else state.with_outbox(kept, 0)


@dataclass
class Sent:
    """What one send-and-clear step did."""

    delivered: list[OutboxEntry] = field(default_factory=list)
    deferred: dict[tuple[str, str], str] = field(default_factory=dict)
    """(action id, target) -> why the target refused it; the relay retries it."""
    parked: list[Pending] = field(default_factory=list)
    failed: dict[Hashable, str] = field(default_factory=dict)


def _cleared(
    state: S, delivered: set[tuple[str, str]], refused: Mapping[tuple[str, str], str], now: int
) -> tuple[S, list[Pending]]:
    kept: list[Pending] = []
    parked: list[Pending] = []
    for p in state.pending:
        key = (p.action.action_id, p.target)
        if key in delivered:
            continue
        if key in refused:
            retried = Pending(p.action, p.target, p.attempts + 1, refused[key][:500], p.sequence)
            if retried.attempts >= MAX_ATTEMPTS:
                parked.append(retried)
            else:
                kept.append(retried)
            continue
        kept.append(p)
    if not kept:
        return state.with_outbox((), 0), parked
    if not any((p.action.action_id, p.target) in refused for p in kept):
        return state.with_outbox(tuple(kept), state.due), parked
    attempts = max(p.attempts for p in kept)
    return state.with_outbox(
        tuple(kept), now + BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]
    ), parked


def send_and_clear(
    owed: Mapping[K, Sequence[Pending]],
    states: Mapping[K, S],
    targets: Sequence[ActionTarget],
    store: StatePort[K, S],
    parking: ParkingPort,
    *,
    now: int,
    settings: CommitSettings = UNCACHED,
    kind: str = "",
    base: Callable[[K], S],
    clear_delivered: bool = True,
    proof: Callable[[], bool] | None = None,
) -> Sent:
    """Send what each item owes, then clear what was delivered from the item (one conditional write
    per item, through :func:`commit_loop`). A refusal stays in the item, due for the relay after a
    backoff; after ``MAX_ATTEMPTS`` it is parked where an operator sees it.

    With ``clear_delivered`` false (a stream caller whose lane will prove delivery, see
    :func:`delivered_before`), an item whose entries were all delivered is not written: its next
    write drops them. Only an item with a refusal is written, and that write clears the rest. Then
    ``proof`` records the delivery (the lane's sent mark, which a redelivered batch reads); it comes
    after the refusals' writes, so a mark never covers an entry that is not yet the relay's. When it
    cannot be written, the delivered entries are cleared after all, one write per item: otherwise
    an item that is never written again (a settled counter) would hold them as owed, and a
    redelivery of the batch would send them again."""
    sent = Sent()
    entries = [p.entry for pending in owed.values() for p in pending]
    if not entries:
        return sent
    delivery = deliver(entries, targets)
    sent.delivered = list(delivery.delivered)
    sent.deferred = dict(delivery.failed)
    delivered = {(a.action_id, t) for a, t in delivery.delivered}
    refused = dict(delivery.failed)
    parked: dict[K, list[Pending]] = {}

    def clear(key: K, state: S, retry: bool) -> Change[S] | None:
        if not clearing and not any((p.action.action_id, p.target) in refused for p in state.pending):
            return None
        new, gone = _cleared(state, delivered, refused, now)
        parked[key] = gone
        if new.pending == state.pending and new.due == state.due:
            return None
        return Change(new)

    def start(key: K) -> S:
        return states[key] if key in states else base(key)

    clearing = clear_delivered
    done = commit_loop(owed, clear, store, base=start, now=now, settings=settings, kind=kind)
    changes = dict(done.changes)
    failed = dict(done.failed)
    if not clear_delivered and proof is not None and not proof():
        clearing = True
        left = {key: pending for key, pending in owed.items() if key not in changes and key not in failed}
        again = commit_loop(left, clear, store, base=start, now=now, settings=settings, kind=kind)
        changes.update(again.changes)
        failed.update(again.failed)
    for key, reason in failed.items():
        sent.failed[key] = reason
    for key in changes:
        sent.parked.extend(parked.get(key, ()))
    if sent.parked:
        parking.park(sent.parked, now)
    return sent


def owed_by_lane(
    states: Mapping[K, S],
    lanes: Iterable[str],
    fresh: Iterable[str] = (),
    starts: Mapping[str, int] | None = None,
    ends: Mapping[str, int] | None = None,
) -> dict[K, tuple[Pending, ...]]:
    """After a redelivery: what the items hold for exactly these lanes (never a lane whose name merely
    begins with one of them) that no relay holds, this invocation did not just produce, the lane has
    not already proved delivered (``starts``: the first sequence of this batch per lane), and records
    of this batch produced (``ends``: its last sequence per lane; an entry from later records is
    the business of the batch that brings them, as when Lambda bisects a failed batch). The
    invocation that committed them died before sending them; they are ours to send now."""
    wanted = set(lanes)
    proved = starts or {}
    last = ends or {}
    skip = set(fresh)
    owed: dict[K, tuple[Pending, ...]] = {}
    for key, state in states.items():
        if state.due:
            continue
        mine = tuple(
            p
            for p in state.pending
            if p.action.lane in wanted
            and p.action.action_id not in skip
            and not delivered_before(p, proved)
            and not (p.sequence and p.sequence > last.get(p.action.lane, p.sequence))
        )
        if mine:
            owed[key] = mine
    return owed
