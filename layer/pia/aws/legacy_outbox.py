"""Outbox entries written before the outbox moved into the state items, drained once by the relay.

Before that change an aggregator committed each action it owed as an item of its own in the
aggregates table: ``pk = O#<bucket 0..3>``, ``sk = <lane>#<action id>#<target>``, with the action
(``a``, JSON), its target (``tg``), the commit time (``t``) and an old relay's lease (``cl``). Nothing
of the current code writes or reads that partition, so an entry left there by an upgrade (a target
was refusing it, or the invocation that wrote it died) would never be sent.

The relay therefore treats each such entry as a state item that owes one action and runs it through
the same path as every other (:func:`pia.targets.relay.relay_due`: claim, send, clear, park), so it is
delivered once, retried with the same backoff, and parked after the same number of refusals. Here
only the storage differs: clearing an entry deletes it, and a refusal is written back onto it.

The partitions are read in bounded pages only while they hold anything: once a run finds all of
them empty, after any old aggregator could still have been running (:data:`GRACE_SECONDS` after this
container's first run), the container stops looking (see README, "Upgrading").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from botocore.exceptions import ClientError

from pia.core.actions import Action
from pia.core.state import ParkingPort, Pending, StateCommit, StateWrite, WriteStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LEGACY_PARTITIONS = tuple(f"O#{bucket}" for bucket in range(4))
GRACE_SECONDS = 900
"""Lambda's longest timeout: an aggregator of the old version still running when the upgrade was
deployed has written its last entry by then."""


class LegacyKey(NamedTuple):
    pk: str
    sk: str


@dataclass(frozen=True)
class LegacyEntry:
    """One old outbox item as a state item that owes at most one action. Untouched since the
    upgrade it has no version (0), and it is due from its commit time, or when an old relay's lease
    on it ends."""

    key: LegacyKey
    pending: tuple[Pending, ...]
    due: int
    version: int = 0

    def with_outbox(self, pending: tuple[Pending, ...], due: int) -> Self:
        return replace(self, pending=pending, due=due)

    def with_version(self, version: int) -> Self:
        return replace(self, version=version)


def entry_from_item(item: Mapping[str, Any]) -> LegacyEntry:
    key = LegacyKey(item["pk"]["S"], item["sk"]["S"])
    owed = Pending(
        Action.from_json(json.loads(item["a"]["S"])),
        item["tg"]["S"],
        int(item.get("n", {}).get("N", "0")),
        item.get("r", {}).get("S", ""),
    )
    if "d" in item:
        due = int(item["d"]["N"])
    else:
        due = max(1, int(item.get("t", {}).get("N", "0")), int(item.get("cl", {}).get("N", "0")))
    return LegacyEntry(key, (owed,), due, int(item.get("v", {}).get("N", "0")))


def entry_item(entry: LegacyEntry) -> dict[str, Any]:
    """An entry still owed after a claim or a refusal, in the old layout plus what the relay needs
    (version, attempts, reason, due), so an interrupted drain resumes where it stopped."""
    (owed,) = entry.pending
    item: dict[str, Any] = {
        "pk": {"S": entry.key.pk},
        "sk": {"S": entry.key.sk},
        "a": {"S": owed.action.dumps()},
        "tg": {"S": owed.target},
        "v": {"N": str(entry.version)},
        "n": {"N": str(owed.attempts)},
        "d": {"N": str(entry.due)},
    }
    if owed.reason:
        item["r"] = {"S": owed.reason}
    return item


class LegacyOutbox:
    """The old outbox partitions of the aggregates table, as the relay's :class:`DueItems`."""

    def __init__(self, client: DynamoDBClient, table_name: str, parking: ParkingPort) -> None:
        self.client = client
        self.table = table_name
        self._parking = parking
        self._first_run: int | None = None
        self._empty: set[str] = set()
        self.drained = False

    def partitions(self) -> list[str]:
        """The partitions still worth reading: none once they were found drained."""
        return [] if self.drained else list(LEGACY_PARTITIONS)

    def run_done(self, now: int) -> None:
        """Called after each relay run: remembers the partitions as drained once a whole run found
        them empty, ``GRACE_SECONDS`` after this container's first run."""
        if self._first_run is None:
            self._first_run = now
        if self._empty >= set(LEGACY_PARTITIONS) and now - self._first_run >= GRACE_SECONDS:
            self.drained = True
        self._empty = set()

    def due_page(
        self, partition: str, now: int, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[LegacyEntry], dict[str, Any] | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = self.client.query(**kwargs)
        items = page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not start and not items and not last:
            self._empty.add(partition)
        return [entry_from_item(item) for item in items], last

    def key_for(self, state: LegacyEntry) -> LegacyKey:
        return state.key

    def commit(
        self, writes: Sequence[StateWrite[LegacyKey, LegacyEntry]], now: int
    ) -> StateCommit[LegacyKey, LegacyEntry]:
        """One conditional write per entry: a delete once nothing is owed (delivered or parked),
        else the entry written back. An entry gone meanwhile (another run cleared it) owes nothing."""
        outcome: StateCommit[LegacyKey, LegacyEntry] = StateCommit()
        for write in writes:
            key = {"pk": {"S": write.key.pk}, "sk": {"S": write.key.sk}}
            condition: dict[str, Any] = (
                {"ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(v)"}
                if write.expected_version == 0
                else {
                    "ConditionExpression": "v = :v",
                    "ExpressionAttributeValues": {":v": {"N": str(write.expected_version)}},
                }
            )
            try:
                if write.state.pending:
                    self.client.put_item(
                        TableName=self.table,
                        Item=entry_item(write.state),
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                        **condition,
                    )
                else:
                    self.client.delete_item(
                        TableName=self.table,
                        Key=key,
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                        **condition,
                    )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    item: Mapping[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
                    outcome.status[write.key] = WriteStatus.CONFLICT
                    outcome.current[write.key] = (
                        entry_from_item(item)
                        if item
                        else LegacyEntry(write.key, (), 0, write.expected_version)
                    )
                else:
                    # Throttling is already retried by the SDK (standard mode): what reaches here
                    # fails this run, and the next run resumes the drain.
                    outcome.status[write.key] = WriteStatus.FAILED
                    outcome.reasons[write.key] = f"{code}: {exc}"
                continue
            outcome.status[write.key] = WriteStatus.COMMITTED
        return outcome

    def park(self, entries: Sequence[Pending], now: int) -> None:
        self._parking.park(entries, now)
