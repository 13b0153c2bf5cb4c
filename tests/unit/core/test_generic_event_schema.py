"""The published JSON Schema and the parser tell producers the same thing about the generic format."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pia.core.events import Event, EventFormat, RecordRejected, parse_event
from pia.counting.counters import RECENT_EVENT_IDS, CounterState, Position, apply_events
from pia.rules.table import parse_rules
from tests.conftest import rule_row

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "schemas" / "generic-event.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def sample_documents() -> list[dict[str, Any]]:
    event = json.loads((ROOT / "events" / "kinesis-generic-batch.json").read_text())
    return [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("doc", [*sample_documents(), *SCHEMA["examples"]])
def test_the_schema_accepts_the_samples_and_the_parser_reads_them_as_generic(doc: dict[str, Any]) -> None:
    assert list(VALIDATOR.iter_errors(doc)) == []
    result = parse_event(json.dumps(doc).encode())
    assert not isinstance(result, Event) or result.format is EventFormat.GENERIC


GOOD: dict[str, Any] = {"user_id": "user-1", "event_type": "purchase", "timestamp": "2026-11-02T09:15:00Z"}

BAD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing user_id", {"event_type": "purchase", "timestamp": "2026-11-02T09:15:00Z"}, "user_id"),
    ("empty user_id", {**GOOD, "user_id": ""}, "user_id"),
    ("blank user_id", {**GOOD, "user_id": "   "}, "user_id"),
    ("numeric user_id", {**GOOD, "user_id": 1001}, "user_id"),
    ("missing timestamp", {"user_id": "u", "event_type": "purchase"}, "timestamp"),
    ("words for a timestamp", {**GOOD, "timestamp": "yesterday"}, "timestamp"),
    ("impossible date", {**GOOD, "timestamp": "2026-13-01T00:00:00Z"}, "timestamp"),
    ("epoch seconds", {**GOOD, "timestamp": 1793610900}, "timestamp"),
    ("epoch ms at the end of year 9999", {**GOOD, "timestamp": 253402300799999}, "timestamp"),
    ("missing event_type", {"user_id": "u", "timestamp": "2026-11-02T09:15:00Z"}, "event_type"),
    ("metric as text", {**GOOD, "metrics": {"amount": "12"}}, "metrics.amount"),
    ("metric as boolean", {**GOOD, "metrics": {"amount": True}}, "metrics.amount"),
    ("attribute as object", {**GOOD, "attributes": {"plan": {"tier": 1}}}, "attributes.plan"),
    ("event_id as number", {**GOOD, "event_id": 7}, "event_id"),
]


@pytest.mark.parametrize(("case", "doc", "field"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_schema_and_parser_both_refuse_a_bad_record(case: str, doc: dict[str, Any], field: str) -> None:
    assert list(VALIDATOR.iter_errors(doc)), f"the schema accepted: {case}"
    with pytest.raises(RecordRejected) as caught:
        parse_event(json.dumps(doc).encode())
    assert caught.value.field == field


VALID_BEYOND_WHAT_RULES_MATCH: list[tuple[str, dict[str, Any]]] = [
    ("event_type over 50", {**GOOD, "event_type": "e" * 51}),
    ("51 metrics", {**GOOD, "metrics": {f"m{i}": i for i in range(51)}}),
    ("attribute of 201 characters", {**GOOD, "attributes": {"note": "x" * 201}}),
    ("51 attributes", {**GOOD, "attributes": {f"a{i}": "v" for i in range(51)}}),
    ("event_id of 300 characters", {**GOOD, "event_id": "e" * 300}),
]


@pytest.mark.parametrize(
    ("case", "doc"), VALID_BEYOND_WHAT_RULES_MATCH, ids=[c[0] for c in VALID_BEYOND_WHAT_RULES_MATCH]
)
def test_schema_and_parser_both_accept_what_no_rule_could_match(case: str, doc: dict[str, Any]) -> None:
    assert list(VALIDATOR.iter_errors(doc)) == [], case
    parse_event(json.dumps(doc).encode())


def test_a_record_with_pinpoint_timestamps_is_not_a_generic_record() -> None:
    doc = {**GOOD, "event_timestamp": 1793610900000}
    assert list(VALIDATOR.iter_errors(doc))


def paragraphs_on_event_id(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.split("\n\n") if "event_id" in p]


EVENT_ID_DOCS = {
    "schema": [SCHEMA["properties"]["event_id"]["description"]],
    "README": paragraphs_on_event_id((ROOT / "README.md").read_text()),
    "guide": paragraphs_on_event_id((ROOT / "docs" / "moving-off-pinpoint.md").read_text()),
}


@pytest.mark.parametrize("where", EVENT_ID_DOCS)
def test_every_contract_says_what_the_code_does_with_event_id(where: str) -> None:
    """Issue #15: the schema said event_id was not used to de-duplicate while the code dropped an
    event whose id was among a counter's last 32, so a producer putting a trace id there lost events."""
    texts = EVENT_ID_DOCS[where]
    assert not [t for t in texts if "not used to de-duplicate" in t.lower()]
    assert [t for t in texts if f"last {RECENT_EVENT_IDS} " in t], "the resend window, as the code keeps it"
    assert [t for t in texts if "unique" in t.lower() and "trace" in t], (
        "the warning about ids shared by events"
    )


def test_a_resent_event_id_counts_once_within_the_window_and_again_after_it() -> None:
    """The behaviour those documents describe, on one counter."""
    rule = parse_rules(
        [
            (
                2,
                rule_row(
                    *[
                        "aggregator",
                        "purchase",
                        "na",
                        "na",
                        "greater",
                        "999",
                        "na",
                        "999",
                        "no",
                        "9999-99-99",
                        "9999-99-99",
                    ]
                ),
            )
        ]
    ).rules[0]

    def event(event_id: str) -> tuple[Position, Event]:
        doc = {**GOOD, "event_id": event_id}
        parsed = parse_event(json.dumps(doc).encode())
        assert isinstance(parsed, Event)
        return Position("shardId-0", next(positions)), parsed

    positions = iter(range(1, 1_000))
    first = [event("resent"), event("resent")]
    between = [event(f"other-{n}") for n in range(RECENT_EVENT_IDS)]
    state = CounterState(rule_id=rule.rule_id, user_id="user-1")
    step = apply_events(state, rule, first + between + [event("resent")], now=0, lane_retention_seconds=60)
    assert step.state.count == 1 + RECENT_EVENT_IDS + 1
    assert step.duplicates == 1
