"""The one state path against an in-memory table: conflicts recompute, newer values supersede older
ones, what a target refuses waits for the relay and is parked in the end, and recovery after a crash
takes exactly its own lanes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Self

from pia.core.actions import Action, ActionKind, SendResult
from pia.core.state import (
    MAX_ATTEMPTS,
    Change,
    Pending,
    StateCommit,
    StateWrite,
    WriteStatus,
    commit_loop,
    delivered_before,
    owe,
    owed_by_lane,
    send_and_clear,
    without_delivered,
)

NOW = 1_800_000_000


@dataclass(frozen=True)
class Box:
    value: int = 0
    version: int = 0
    pending: tuple[Pending, ...] = ()
    due: int = 0

    def with_outbox(self, pending: tuple[Pending, ...], due: int) -> Self:
        return replace(self, pending=pending, due=due)

    def with_version(self, version: int) -> Self:
        return replace(self, version=version)


class Table:
    def __init__(self) -> None:
        self.items: dict[str, Box] = {}
        self.parked: list[Pending] = []
        self.puts = 0

    def commit(self, writes: Sequence[StateWrite[str, Box]], now: int) -> StateCommit[str, Box]:
        result: StateCommit[str, Box] = StateCommit()
        for write in writes:
            self.puts += 1
            current = self.items.get(write.key)
            if (current.version if current else 0) != write.expected_version:
                result.status[write.key] = WriteStatus.CONFLICT
                result.current[write.key] = current
                continue
            self.items[write.key] = write.state
            result.status[write.key] = WriteStatus.COMMITTED
        return result

    def park(self, entries: Sequence[Pending], now: int) -> None:
        self.parked.extend(entries)


class Target:
    name = "pinpoint"

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.sent: list[str | None] = []

    def send(self, actions: Sequence[Action]) -> SendResult:
        if self.refuse:
            return SendResult({a.action_id: "refused" for a in actions})
        self.sent.extend(a.value for a in actions)
        return SendResult()


def attribute(value: str, lane: str = "s0", n: int = 1) -> Action:
    return Action(
        f"{value}-{lane}-{n}",
        ActionKind.SET_ATTRIBUTE,
        "u",
        "r",
        "trk_x",
        value,
        (),
        1,
        Decimal(0),
        datetime(2026, 1, 1, tzinfo=UTC),
        lane,
    )


def test_a_conflict_recomputes_from_the_item_as_it_is_now() -> None:
    table = Table()
    table.items["k"] = Box(value=5, version=3)

    def add_one(key: str, box: Box, retry: bool) -> Change[Box]:
        return Change(replace(box, value=box.value + 1))

    done = commit_loop(["k"], add_one, table, base=lambda _: Box(), now=NOW)
    assert (done.conflicts, table.items["k"].value, table.items["k"].version) == (1, 6, 4)


def test_a_newer_value_supersedes_an_older_one_still_owed() -> None:
    held = Box(pending=(Pending(attribute("ready"), "pinpoint", attempts=1),), due=NOW + 60)
    change = owe(held, [attribute("not-ready", n=2)], ["pinpoint"], lanes={"s0"}, now=NOW, hand_over=300)
    assert [p.action.value for p in change.state.pending] == ["not-ready"]
    assert change.send == (), "the relay holds the item: it sends, in order"


def test_replacing_a_value_in_flight_from_another_lane_hands_the_new_one_to_the_relay() -> None:
    in_flight = Box(pending=(Pending(attribute("ready", lane="s1"), "pinpoint"),))
    change = owe(
        in_flight, [attribute("not-ready", lane="s0")], ["pinpoint"], lanes={"s0"}, now=NOW, hand_over=300
    )
    assert change.send == () and change.state.due == NOW + 300


def test_a_refused_action_waits_for_the_relay_then_is_parked_after_bounded_attempts() -> None:
    table = Table()
    owed = Pending(attribute("ready"), "pinpoint")
    table.items["k"] = Box(version=1, pending=(owed,))
    refusing = Target(refuse=True)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        box = table.items["k"]
        send_and_clear(
            {"k": box.pending}, {"k": box}, [refusing], table, table, now=NOW, base=lambda _: Box()
        )
        if attempt < MAX_ATTEMPTS:
            assert table.items["k"].pending[0].attempts == attempt and table.items["k"].due > NOW
    assert table.items["k"].pending == () and table.items["k"].due == 0
    assert [p.attempts for p in table.parked] == [MAX_ATTEMPTS]


def test_delivered_actions_are_cleared_from_the_item() -> None:
    table = Table()
    table.items["k"] = Box(version=1, pending=(Pending(attribute("ready"), "pinpoint"),))
    target = Target()
    sent = send_and_clear(
        {"k": table.items["k"].pending}, table.items, [target], table, table, now=NOW, base=lambda _: Box()
    )
    assert target.sent == ["ready"] and len(sent.delivered) == 1
    assert table.items["k"] == Box(version=2)


def test_recovery_takes_exactly_its_own_lanes() -> None:
    box = Box(
        pending=(
            Pending(attribute("a", lane="sh/acct"), "pinpoint"),
            Pending(attribute("b", lane="sh/acct#7"), "pinpoint"),
        )
    )
    owed = owed_by_lane({"k": box}, {"sh/acct"})
    assert [p.action.lane for p in owed["k"]] == ["sh/acct"]
    assert owed_by_lane({"k": replace(box, due=NOW)}, {"sh/acct"}) == {}, (
        "what the relay holds is the relay's"
    )


def test_a_later_batch_of_the_same_lane_proves_an_entry_delivered_and_no_other_does() -> None:
    sent = Pending(attribute("ready", lane="sh/acct"), "pinpoint", sequence=40)
    assert delivered_before(sent, {"sh/acct": 41})
    assert not delivered_before(sent, {"sh/acct": 40}), "a batch starting at its record may be a redelivery"
    assert not delivered_before(sent, {"sh/acct#7": 99}), "another lane, even one whose name extends it"
    assert not delivered_before(replace(sent, sequence=0), {"sh/acct": 99}), "not from a stream"
    box = Box(
        version=3, pending=(sent, Pending(attribute("x", lane="sh/acct", n=2), "pinpoint", sequence=41))
    )
    assert [p.sequence for p in without_delivered(box, {"sh/acct": 41}).pending] == [41]
    assert without_delivered(replace(box, due=NOW), {"sh/acct": 99}).pending == box.pending, (
        "what the relay holds is the relay's to clear"
    )


def test_recovery_skips_what_the_lane_already_proved_delivered() -> None:
    box = Box(
        pending=(
            Pending(attribute("a", lane="s0"), "pinpoint", sequence=10),
            Pending(attribute("b", lane="s0", n=2), "pinpoint", sequence=20),
        )
    )
    owed = owed_by_lane({"k": box}, {"s0"}, starts={"s0": 15})
    assert [p.sequence for p in owed["k"]] == [20]
    first_half = owed_by_lane({"k": box}, {"s0"}, starts={"s0": 1}, ends={"s0": 12})
    assert [p.sequence for p in first_half["k"]] == [10], (
        "a bisected half sends only what its own records produced; the other half sends the rest"
    )


def test_without_clearing_only_an_item_with_a_refusal_is_written() -> None:
    table = Table()
    delivered = Pending(attribute("ready"), "pinpoint", sequence=7)
    table.items["k"] = Box(version=1, pending=(delivered,))
    target = Target()
    send_and_clear(
        {"k": (delivered,)},
        table.items,
        [target],
        table,
        table,
        now=NOW,
        base=lambda _: Box(),
        clear_delivered=False,
    )
    assert target.sent == ["ready"] and table.puts == 0 and table.items["k"].pending == (delivered,)
    send_and_clear(
        {"k": (delivered,)},
        table.items,
        [Target(refuse=True)],
        table,
        table,
        now=NOW,
        base=lambda _: Box(),
        clear_delivered=False,
    )
    assert table.puts == 1 and table.items["k"].due > NOW, "a refusal is written for the relay"
