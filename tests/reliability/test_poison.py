"""Scenario 5: records that can never be counted must not hold the shard, and must not vanish silently."""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pia_cli.lambda_events import sequence
from tests.reliability.deployment import Deployment, Produced
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import StreamEvent
from tests.reliability.workload import CATALOG, random_events, reference_for, users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]
SHARD = "shardId-000000000000"
NO_USER_LOG = "event skipped: no user id"


@dataclass(frozen=True)
class Poison:
    kind: str
    data: str
    field: str | None


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()


def _doc(user: str, **changes: Any) -> dict[str, Any]:
    document = StreamEvent(user, "click", 0, {"color": "red"}).document()
    document.update(changes)
    return document


def encoded(document: dict[str, Any]) -> str:
    return _b64(json.dumps(document).encode())


def poisons(user: str) -> list[Poison]:
    """Each kind issue #6 lists, plus two found on the way: a lone surrogate escape and deep nesting.
    Every one names a real user and a counted event, so counting it by mistake shows up."""
    return [
        Poison("not base64", "%%% this is not base64 %%%", "data"),
        Poison("not JSON", _b64(b'{"event_type": "click", "endpoint": '), "data"),
        Poison("missing user (Pinpoint format)", encoded(_doc(user, endpoint={"User": {}})), None),
        Poison(
            "missing user (generic format)",
            encoded({"event_type": "click", "timestamp": "2026-11-20T09:00:00Z"}),
            "user_id",
        ),
        Poison("NaN metric", encoded(_doc(user, metrics={"amount": float("nan")})), "metrics.amount"),
        Poison("infinite metric", encoded(_doc(user, metrics={"amount": float("inf")})), "metrics.amount"),
        Poison("-infinite metric", encoded(_doc(user, metrics={"amount": float("-inf")})), "metrics.amount"),
        Poison(
            "metric beyond a double",
            _b64(json.dumps(_doc(user)).replace('"metrics": {}', '"metrics": {"amount": 1e999}').encode()),
            "metrics.amount",
        ),
        Poison(
            "attribute that is an object",
            encoded(_doc(user, attributes={"note": {"x": "y"}})),
            "attributes.note",
        ),
        Poison(
            "record over Kinesis's 1 MiB", encoded(_doc(user, attributes={"note": "y" * 1_100_000})), "data"
        ),
        Poison(
            "invalid UTF-8", _b64(json.dumps(_doc(user)).encode().replace(b'"red"', b'"r\xff\xfed"')), "data"
        ),
        Poison(
            "unpaired surrogate escape",
            _b64(json.dumps(_doc(user)).replace(user, "\\ud800").encode()),
            "data",
        ),
        Poison("JSON nested 100,000 deep", _b64(b"[" * 100_000), "data"),
    ]


def test_poison_records_are_logged_with_their_reason_and_never_hold_the_shard(
    deploy: Callable[..., Deployment],
    ledger: ReliabilityLedger,
    examples: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = ledger.scenario(
        5,
        "Poison records",
        "Every batch mixes good records with 1-4 poison records (one kind guaranteed per run, in turn, so "
        "every kind appears): not base64, not JSON, a missing user (Pinpoint and generic formats), NaN, "
        "+/-infinite and beyond-double metrics, an attribute that is an object, a record over 1 MiB, invalid "
        "UTF-8, an unpaired surrogate escape and JSON nested 100,000 deep. Checked: no batchItemFailures "
        "(the shard moves on), each rejected record has one ERROR log naming its shard, sequence number, "
        "field and reason, each record without a user its skip log, and the good neighbours count once.",
    )
    kinds = [p.kind for p in poisons("u")]
    seen: set[str] = set()
    for run in range(examples):
        rng = random.Random(f"poison-{run}")
        with deploy(rng) as stack:
            stack.publish(CATALOG)
            people = users(rng)
            good = [Produced(SHARD, 0, e) for e in random_events(rng, people, rng.randint(4, 20))]
            catalogue = poisons(rng.choice(people))
            chosen = [catalogue[run % len(catalogue)], *rng.sample(catalogue, rng.randint(0, 3))]
            slots: list[Produced | Poison] = list(good)
            for poison in chosen:
                slots.insert(rng.randint(0, len(slots)), poison)
            numbered = [(int(sequence(i + 1)), item) for i, item in enumerate(slots)]
            records = [
                Produced(SHARD, seq, item.event) for seq, item in numbered if isinstance(item, Produced)
            ]
            placeholder = StreamEvent(None, "poison", 0)
            event = stack.batch(
                [
                    Produced(SHARD, seq, item.event if isinstance(item, Produced) else placeholder)
                    for seq, item in numbered
                ]
            )
            for raw, (_, item) in zip(event["Records"], numbered, strict=True):
                if isinstance(item, Poison):
                    raw["kinesis"]["data"] = item.data
            caplog.clear()
            with caplog.at_level(logging.INFO):
                response = stack.invoke(event)
            differences: list[str] = []
            if response["batchItemFailures"]:
                differences.append(f"poison held the shard: {response['batchItemFailures']}")
            rejected = [r for r in caplog.records if r.getMessage() == "record rejected"]
            skipped = [r for r in caplog.records if r.getMessage() == NO_USER_LOG]
            for seq, item in numbered:
                if not isinstance(item, Poison):
                    continue
                seen.add(item.kind)
                if item.field is None:
                    continue
                logs = [r for r in rejected if getattr(r, "sequence_number", None) == str(seq)]
                if len(logs) != 1:
                    differences.append(f"{item.kind} at {seq}: {len(logs)} 'record rejected' logs")
                    continue
                log = logs[0]
                facts = (log.levelname, getattr(log, "shard", None), getattr(log, "field", None))
                if facts != ("ERROR", SHARD, item.field) or not getattr(log, "reason", ""):
                    differences.append(
                        f"{item.kind} at {seq}: logged as {facts}, {getattr(log, 'reason', '')!r}"
                    )
            expected_skips = sum(1 for _, i in numbered if isinstance(i, Poison) and i.field is None)
            expected_skips += sum(
                1
                for r in records
                if r.event.user is None and not r.event.event_type.startswith(("_", "trk_"))
            )
            if len(skipped) != expected_skips:
                differences.append(f"{len(skipped)} skip logs for {expected_skips} records without a user")
            model = reference_for((r.lane, r.sequence, r.event) for r in records)
            differences += stack.compare(model, CATALOG).differences
            row.record(faults=len(chosen), differences=differences)
    assert row.differences == 0, row.verdict()
    assert seen == set(kinds), set(kinds) - seen
