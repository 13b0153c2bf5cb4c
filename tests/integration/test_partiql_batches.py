"""State writes 25 to a ``BatchExecuteStatement``, and the local executor that answers them.

The executor stands in for DynamoDB where moto cannot run these statements, so it is held to moto's
own single-item semantics (same final items, same outcomes as conditional PutItem and UpdateItem),
to botocore's model of the response, and to DynamoDB's batch rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pia.aws.state_table import MAX_STATEMENTS
from pia.core.state import StateWrite, WriteStatus
from pia.counting.counters import CounterKey, CounterState
from pia.counting.store import CounterStore
from pia.rules.caps import CapWindow
from pia_cli.emulator import create_table
from pia_cli.recorder import model_violations
from tests.conftest import AGGREGATES_TABLE

TABLE = "pia-partiql"
OTHER = "pia-partiql-twin"


def _insert(table: str, item: dict[str, Any]) -> dict[str, Any]:
    names = list(item)
    fields = ", ".join(f"'{n}': ?" for n in names)
    return {
        "Statement": f'INSERT INTO "{table}" VALUE {{{fields}}}',
        "Parameters": [item[n] for n in names],
    }


def _update(
    table: str, key: dict[str, Any], sets: dict[str, Any], removes: Sequence[str], v: int
) -> dict[str, Any]:
    clauses = "".join(f' SET "{n}" = ?' for n in sets) + "".join(f' REMOVE "{n}"' for n in removes)
    return {
        "Statement": f'UPDATE "{table}"{clauses} WHERE "pk" = ? AND "sk" = ? AND "v" = ?',
        "Parameters": [*sets.values(), key["pk"], key["sk"], {"N": str(v)}],
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _key(user: str) -> dict[str, Any]:
    return {"pk": {"S": "R#x"}, "sk": {"S": user}}


WRITES: list[tuple[str, str, dict[str, Any], tuple[str, ...], int]] = [
    ("insert", "ann", {"v": {"N": "1"}, "c": {"N": "1"}, "ob": {"L": [{"S": "x"}]}}, (), 0),
    ("insert", "ann", {"v": {"N": "1"}, "c": {"N": "9"}}, (), 0),
    ("update", "ann", {"v": {"N": "2"}, "c": {"N": "2"}}, ("ob", "od"), 1),
    ("update", "ann", {"v": {"N": "3"}, "c": {"N": "3"}}, (), 1),
    ("update", "bob", {"v": {"N": "2"}, "c": {"N": "1"}}, (), 1),
    ("insert", "bob", {"v": {"N": "1"}, "c": {"N": "4"}, "ep": {"L": [{"S": "e1"}]}}, (), 0),
    ("update", "bob", {"v": {"N": "2"}, "c": {"N": "5"}, "ln": {"M": {"s0": {"S": "7:1"}}}}, ("ep",), 1),
]


def _by_statement(
    client: Any, kind: str, user: str, values: dict[str, Any], removes: tuple[str, ...], v: int
) -> Any:
    statement = (
        _insert(TABLE, {**_key(user), **values})
        if kind == "insert"
        else _update(TABLE, _key(user), values, removes, v)
    )
    (answer,) = client.batch_execute_statement(Statements=[statement])["Responses"]
    error = answer.get("Error")
    return None if error is None else (error["Code"], error.get("Item"))


def _by_single_item(
    client: Any, kind: str, user: str, values: dict[str, Any], removes: tuple[str, ...], v: int
) -> Any:
    try:
        if kind == "insert":
            client.put_item(
                TableName=OTHER, Item={**_key(user), **values}, ConditionExpression="attribute_not_exists(pk)"
            )
        else:
            names = {f"#s{i}": n for i, n in enumerate(values)} | {f"#r{i}": n for i, n in enumerate(removes)}
            sets = ", ".join(f"#s{i} = :s{i}" for i in range(len(values)))
            expression = f"SET {sets}" + (
                f" REMOVE {', '.join(f'#r{i}' for i in range(len(removes)))}" if removes else ""
            )
            client.update_item(
                TableName=OTHER,
                Key=_key(user),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk) AND #cv = :cv",
                ExpressionAttributeNames={**names, "#cv": "v"},
                ExpressionAttributeValues={
                    **{f":s{i}": val for i, val in enumerate(values.values())},
                    ":cv": {"N": str(v)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        assert code == "ConditionalCheckFailedException"
        item = exc.response.get("Item")
        return ("DuplicateItem", None) if kind == "insert" else ("ConditionalCheckFailed", item)
    return None


def test_the_executor_leaves_the_same_items_and_outcomes_as_moto_single_item_writes(dynamodb: Any) -> None:
    create_table(dynamodb, TABLE)
    create_table(dynamodb, OTHER)
    for write in WRITES:
        assert _by_statement(dynamodb, *write) == _by_single_item(dynamodb, *write), write
    for user in ("ann", "bob"):
        ours = dynamodb.get_item(TableName=TABLE, Key=_key(user))["Item"]
        moto = dynamodb.get_item(TableName=OTHER, Key=_key(user))["Item"]
        assert ours == moto


def test_its_answers_fit_botocore_s_model_of_the_response(dynamodb: Any) -> None:
    create_table(dynamodb, TABLE)
    statements = [
        _insert(TABLE, {**_key("ann"), "v": {"N": "1"}}),
        _update(TABLE, _key("cy"), {"c": {"N": "1"}}, (), 1),
    ]
    response = dynamodb.batch_execute_statement(Statements=statements)
    shape = dynamodb.meta.service_model.operation_model("BatchExecuteStatement").output_shape
    answers = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    assert model_violations(shape, answers, "response") == []
    assert [a.get("Error", {}).get("Code") for a in response["Responses"]] == [None, "ConditionalCheckFailed"]


def test_more_than_25_statements_two_on_one_item_or_a_statement_over_8192_characters_refuse_the_batch(
    dynamodb: Any,
) -> None:
    create_table(dynamodb, TABLE)
    many = [_insert(TABLE, {**_key(f"u{i}"), "v": {"N": "1"}}) for i in range(MAX_STATEMENTS + 1)]
    twice = [
        _insert(TABLE, {**_key("ann"), "v": {"N": "1"}}),
        _update(TABLE, _key("ann"), {"c": {"N": "1"}}, (), 1),
    ]
    wide = {f"attribute{i:04d}": {"N": "1"} for i in range(600)}
    long = [_insert(TABLE, {**_key("cy"), "v": {"N": "1"}}), _insert(TABLE, {**_key("dee"), **wide})]
    assert len(long[1]["Statement"]) > 8192, "PartiQL's limit on a statement's text"
    for statements in (many, twice, long):
        with pytest.raises(ClientError) as refused:
            dynamodb.batch_execute_statement(Statements=statements)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert dynamodb.scan(TableName=TABLE)["Items"] == []


def test_an_item_over_400_kb_fails_its_own_statement_only(dynamodb: Any) -> None:
    create_table(dynamodb, TABLE)
    big = {**_key("big"), "v": {"N": "1"}, "x": {"S": "x" * 400 * 1024}}
    small = {**_key("small"), "v": {"N": "1"}}
    answers = dynamodb.batch_execute_statement(Statements=[_insert(TABLE, big), _insert(TABLE, small)])[
        "Responses"
    ]
    assert answers[0]["Error"]["Code"] == "ValidationError" and "Error" not in answers[1]
    assert [i["sk"]["S"] for i in dynamodb.scan(TableName=TABLE)["Items"]] == ["small"]


def _writes(n: int, version: int = 0) -> list[StateWrite[CounterKey, CounterState]]:
    return [
        StateWrite(
            CounterKey("r1", f"u{i:02d}"),
            CounterState("r1", f"u{i:02d}", version=version + 1, count=1),
            version,
        )
        for i in range(n)
    ]


def test_sixty_writes_take_three_calls_and_a_cold_cache_conflict_returns_the_stored_item(
    dynamodb: Any,
) -> None:
    store = CounterStore(dynamodb, AGGREGATES_TABLE)
    calls: list[int] = []
    dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.BatchExecuteStatement",
        lambda params, **_: calls.append(len(params["Statements"])),
    )
    outcome = store.commit(_writes(60), now=1)
    assert calls == [25, 25, 10]
    assert set(outcome.status.values()) == {WriteStatus.COMMITTED}
    again = store.commit(_writes(1), now=2)
    assert again.status[CounterKey("r1", "u00")] is WriteStatus.CONFLICT
    current = again.current[CounterKey("r1", "u00")]
    assert current is not None and (current.version, current.count) == (1, 1)


class _ThrottlingClient:
    """Passes calls to moto, but the first time answers a third of the statements ThrottlingError."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sent: list[list[str]] = []

    def batch_execute_statement(self, Statements: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.append([s["Parameters"][1]["S"] for s in Statements])
        if len(self.sent) > 1:
            return dict(self.real.batch_execute_statement(Statements=Statements))
        throttled = {"Error": {"Code": "ThrottlingError", "Message": "Throughput exceeds the limit"}}
        kept = [s for i, s in enumerate(Statements) if i % 3]
        done = iter(self.real.batch_execute_statement(Statements=kept)["Responses"])
        return {"Responses": [next(done) if i % 3 else throttled for i in range(len(Statements))]}


def test_throttled_statements_and_only_they_are_sent_again(dynamodb: Any) -> None:
    client = _ThrottlingClient(dynamodb)
    store = CounterStore(client, AGGREGATES_TABLE, sleep=lambda _s: None)  # type: ignore[arg-type]
    outcome = store.commit(_writes(9), now=1)
    assert set(outcome.status.values()) == {WriteStatus.COMMITTED}
    assert client.sent[1] == [f"u{i:02d}" for i in (0, 3, 6)]
    stored = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=AGGREGATES_TABLE)["Items"]
    assert len(stored) == 9 and {i["v"]["N"] for i in stored} == {"1"}


def test_an_update_leaves_exactly_the_new_state_s_item_whatever_the_old_one_held(dynamodb: Any) -> None:
    """Every attribute the codec writes only when set (settled, cap window, endpoints, outbox...) is
    removed when the new state no longer has it: the stored item is the codec's item, as a Put's."""
    store = CounterStore(dynamodb, AGGREGATES_TABLE)
    key = CounterKey("r1", "ann")
    full = CounterState(
        "r1",
        "ann",
        version=1,
        count=3,
        settled=True,
        endpoints=("e1",),
        recent_ids=("id1",),
        cap=CapWindow(100, 2),
        capped=1,
    )
    plain = CounterState("r1", "ann", version=2, count=4)
    assert store.commit([StateWrite(key, full, 0)], now=1).status[key] is WriteStatus.COMMITTED
    outcome = store.commit([StateWrite(key, plain, 1, full)], now=2)
    assert outcome.status[key] is WriteStatus.COMMITTED
    stored = dynamodb.get_item(TableName=AGGREGATES_TABLE, Key=store.codec.key(key))["Item"]
    assert stored == store.codec.item(key, plain, 2)
