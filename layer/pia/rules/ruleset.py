"""The compiled ruleset: immutable, versioned, and cheap to follow.

The poller publishes version N+1 only when the rules' content changed; the aggregator reads one
small pointer item at most once a minute and keeps the parsed rules in memory, so rule lookups cost
nothing per event.

A DynamoDB item holds at most 400 KB, and a rule table holds up to 10,000 rows (about 3 MB of JSON,
and more with long Unicode cells). A ruleset body up to ``INLINE_BODY_BYTES`` lives in the pointer
item itself, as it always has. A larger one is compressed and split into immutable chunk items,
each under its own partition key named by the digest of the compressed body; they are written
first, and the pointer that names them is swapped in the same conditional transaction as before.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pia.rules.model import Rule, RuleType

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RULESET_PK = "RULESET"
CURRENT_SK = "CURRENT"
CHUNK_SK = "BODY"
INLINE_BODY_BYTES = 300_000
CHUNK_BYTES = 350_000
LEGACY_SERIES_PARTITIONS = 16
"""The rollup partitions of a series the ruleset records no count for: every series created before
the count became the ``ROLLUP_PARTITIONS`` setting was keyed over 16."""
MAX_SERIES_PARTITIONS = 1_000
"""Both leave room under DynamoDB's 400 KB item limit for the keys and the other attributes."""


@dataclass(frozen=True)
class Ruleset:
    version: int
    rules: tuple[Rule, ...]
    published_at: str = ""
    source: str = ""
    series_activation: Mapping[str, str] = field(default_factory=dict)
    removed: Mapping[str, str] = field(default_factory=dict)
    series_partitions: Mapping[str, int] = field(default_factory=dict)
    """How many rollup partitions each series was created with (its items' keys depend on it, so it
    never changes); a series missing here predates the setting and keeps the 16 it was created with."""

    @property
    def content_hash(self) -> str:
        return content_hash(self.rules)

    @cached_property
    def aggregator_rules(self) -> dict[str, tuple[Rule, ...]]:
        by_event: dict[str, list[Rule]] = {}
        for rule in self.rules:
            if rule.rule_type is RuleType.AGGREGATOR:
                by_event.setdefault(rule.event_name, []).append(rule)
        return {k: tuple(v) for k, v in by_event.items()}

    @cached_property
    def date_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.rule_type is RuleType.DATE)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "published_at": self.published_at,
            "source": self.source,
            "rules": [r.to_json() for r in self.rules],
            "series_activation": dict(self.series_activation),
            "removed": dict(self.removed),
            **({"series_partitions": dict(self.series_partitions)} if self.series_partitions else {}),
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Ruleset:
        return Ruleset(
            version=int(data["version"]),
            rules=tuple(Rule.from_json(r) for r in data["rules"]),
            published_at=data.get("published_at", ""),
            source=data.get("source", ""),
            series_activation=dict(data.get("series_activation", {})),
            removed=dict(data.get("removed", {})),
            series_partitions={s: int(n) for s, n in data.get("series_partitions", {}).items()},
        )


EMPTY_RULESET = Ruleset(version=0, rules=())


def content_hash(rules: Sequence[Rule]) -> str:
    payload = json.dumps(sorted((r.to_json() for r in rules), key=lambda r: r["rule_id"]), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def activation_for_new_series(published: datetime) -> str:
    """A new date series is counted live from the first UTC day that starts at least an hour after
    publication, when every aggregator has certainly loaded it; earlier days come from backfill."""
    return ((published + timedelta(hours=1)).date() + timedelta(days=1)).isoformat()


class PublishConflict(RuntimeError):
    """Another publisher won the race for this version; re-read and try again."""


class RulesetUnavailable(RuntimeError):
    """The ruleset could not be read. A reader that already holds a ruleset keeps using it: rules
    change rarely, and a brief outage of the table must not stop the counting."""


class RulesetTable:
    """Adapter for the ruleset table: a CURRENT pointer item plus one immutable item per version,
    and for a large body its immutable chunks."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name
        self._chunked: tuple[str, Ruleset] | None = None

    def current(self) -> Ruleset:
        try:
            response = self._client.get_item(
                TableName=self._table,
                Key={"pk": {"S": RULESET_PK}, "sk": {"S": CURRENT_SK}},
                ConsistentRead=True,
            )
        except Exception as exc:
            # Whatever the client raises (botocore's ClientError or BotoCoreError; caught by their
            # base class so this module, which pure code imports, never loads botocore).
            raise RulesetUnavailable(f"ruleset table {self._table}: {exc}") from exc
        item = response.get("Item")
        if not item:
            return EMPTY_RULESET
        if "body" in item:
            return Ruleset.from_json(json.loads(item["body"]["S"]))
        digest = item["digest"]["S"]
        if self._chunked is None or self._chunked[0] != digest:
            self._chunked = (digest, self._read_chunks(digest, int(item["chunks"]["N"])))
        return self._chunked[1]

    def _read_chunks(self, digest: str, count: int) -> Ruleset:
        parts = []
        for index in range(count):
            response = self._client.get_item(
                TableName=self._table, Key=_chunk_key(digest, index), ConsistentRead=True
            )
            parts.append(response["Item"]["data"]["B"])
        blob = b"".join(parts)
        if hashlib.sha256(blob).hexdigest()[: len(digest)] != digest:
            raise ValueError(f"ruleset body {digest} does not match its digest")
        return Ruleset.from_json(json.loads(zlib.decompress(blob)))

    def publish(self, ruleset: Ruleset, expected_version: int) -> None:
        body = json.dumps(ruleset.to_json(), separators=(",", ":"), sort_keys=True)
        common = {
            "version": {"N": str(ruleset.version)},
            "hash": {"S": ruleset.content_hash},
            "published_at": {"S": ruleset.published_at},
            **self._store_body(body.encode()),
        }
        pointer: Any = {
            "TableName": self._table,
            "Item": {"pk": {"S": RULESET_PK}, "sk": {"S": CURRENT_SK}, **common},
        }
        if expected_version == 0:
            pointer["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            pointer["ConditionExpression"] = "version = :v"
            pointer["ExpressionAttributeValues"] = {":v": {"N": str(expected_version)}}
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {"Put": pointer},
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                "pk": {"S": RULESET_PK},
                                "sk": {"S": f"V#{ruleset.version:012d}"},
                                **common,
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except Exception as exc:
            if _error_code(exc) == "TransactionCanceledException":
                raise PublishConflict(
                    f"ruleset version {ruleset.version} was published concurrently"
                ) from exc
            raise

    def _store_body(self, body: bytes) -> dict[str, Any]:
        """The body's attributes for the pointer: the body itself, or the chunks it was written to.
        Chunks are named by content, so a publisher that loses the race leaves nothing the winner
        reads, and two that publish the same body write the same items."""
        if len(body) <= INLINE_BODY_BYTES:
            return {"body": {"S": body.decode()}}
        blob = zlib.compress(body, 9)
        digest = hashlib.sha256(blob).hexdigest()[:32]
        pieces = [blob[start : start + CHUNK_BYTES] for start in range(0, len(blob), CHUNK_BYTES)]
        for index, piece in enumerate(pieces):
            self._client.put_item(
                TableName=self._table, Item={**_chunk_key(digest, index), "data": {"B": piece}}
            )
        return {"digest": {"S": digest}, "chunks": {"N": str(len(pieces))}}


def _chunk_key(digest: str, index: int) -> dict[str, Any]:
    return {"pk": {"S": f"{RULESET_PK}#{digest}#{index:04d}"}, "sk": {"S": CHUNK_SK}}


def _error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ``ClientError``, read without importing botocore: the rules
    package stays importable, and cheap to import, where no AWS client is."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class RulesetCache:
    """Keeps the live ruleset in memory and re-reads the pointer at most every ``ttl_seconds``."""

    def __init__(
        self,
        source: Callable[[], Ruleset],
        ttl_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._ruleset: Ruleset | None = None
        self._loaded_at = 0.0
        self.reads = 0

    def get(self) -> Ruleset:
        now = self._monotonic()
        if self._ruleset is None or now - self._loaded_at >= self._ttl:
            try:
                self._ruleset = self._source()
                self.reads += 1
            except RulesetUnavailable:
                if self._ruleset is None:
                    raise
            self._loaded_at = now
        return self._ruleset
