"""The ruleset in DynamoDB at the documented table size (issue #15): 10,000 rows must publish.

moto stores items of any size; DynamoDB refuses one over 400 KB. The ruleset used to be one item,
so about 1,400 ordinary rows already failed every poller run after `pia rules validate` called
them ok. Every item and every request written here is held to DynamoDB's limits.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from pia.counting.store import item_size
from pia.rules.ruleset import Ruleset, RulesetTable
from pia.rules.sheets import MAX_TABLE_ROWS
from pia.rules.table import parse_rules
from tests.conftest import RULESET_TABLE, rule_row

MAX_ITEM_BYTES = 400 * 1024
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024


@pytest.fixture
def written(dynamodb: Any) -> Iterator[list[tuple[str, int]]]:
    """Every write to the ruleset table, as (operation, request bytes), checked against DynamoDB's
    limits as it is sent."""
    sizes: list[tuple[str, int]] = []

    def check(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "PutItem":
            size = item_size({"": {"M": params["Item"]}}) - 3
            assert size <= MAX_ITEM_BYTES, f"PutItem of {size} bytes"
            sizes.append(("PutItem", size))
        elif model.name == "TransactWriteItems":
            items = [item_size({"": {"M": op["Put"]["Item"]}}) - 3 for op in params["TransactItems"]]
            assert max(items) <= MAX_ITEM_BYTES, f"a transaction item of {max(items)} bytes"
            assert sum(items) <= MAX_TRANSACTION_BYTES, f"a transaction of {sum(items)} bytes"
            sizes.append(("TransactWriteItems", sum(items)))

    dynamodb.meta.events.register("provide-client-params.dynamodb.*", check)
    yield sizes
    dynamodb.meta.events.unregister("provide-client-params.dynamodb.*", check)


def ordinary_rows(count: int) -> list[dict[str, str]]:
    return [
        rule_row(
            "aggregator",
            f"event_{n % 40}",
            "plan",
            f"tier_{n}",
            "greater_or_equal",
            str(n % 97 + 1),
            "na",
            "999",
            "no",
            "9999-99-99",
            "9999-99-99",
        )
        for n in range(count)
    ]


def largest_rows(count: int) -> list[dict[str, str]]:
    """Every cell at its longest, in 4-byte characters that neither compress nor escape cheaply."""
    rng = random.Random(15)

    def text(length: int) -> str:
        return "".join(chr(rng.randrange(0x20000, 0x2A6DF)) for _ in range(length))

    return [
        rule_row(
            "date",
            text(50),
            text(50),
            text(200),
            "greater",
            "1." + "7" * 37 + "E+100",
            "smaller",
            "-9." + "9" * 37 + "E-100",
            "no",
            "2026-01-01",
            "2026-12-31",
            OutputName="trk_" + text(46),
            MetricName=text(256),
        )
        for _ in range(count)
    ]


@pytest.mark.parametrize("rows", [ordinary_rows, largest_rows], ids=["ordinary", "largest"])
def test_a_table_of_the_documented_size_publishes_and_reads_back(
    dynamodb: Any, written: list[tuple[str, int]], rows: Any
) -> None:
    parsed = parse_rules(enumerate(rows(MAX_TABLE_ROWS), start=2))
    assert parsed.errors == () and len(parsed.rules) == MAX_TABLE_ROWS
    table = RulesetTable(dynamodb, RULESET_TABLE)
    first = Ruleset(1, parsed.rules, published_at="2026-11-01T00:00:00+00:00", source="rules.csv")
    table.publish(first, expected_version=0)
    assert written and written[-1][0] == "TransactWriteItems"
    assert RulesetTable(dynamodb, RULESET_TABLE).current() == first

    second = Ruleset(2, parsed.rules[1:], published_at="2026-11-01T00:05:00+00:00", source="rules.csv")
    table.publish(second, expected_version=1)
    assert RulesetTable(dynamodb, RULESET_TABLE).current() == second


def test_a_small_ruleset_stays_one_item_read_in_one_call(dynamodb: Any) -> None:
    parsed = parse_rules(enumerate(ordinary_rows(3), start=2))
    table = RulesetTable(dynamodb, RULESET_TABLE)
    table.publish(Ruleset(1, parsed.rules, published_at="2026-11-01T00:00:00+00:00"), expected_version=0)
    items = dynamodb.scan(TableName=RULESET_TABLE)["Items"]
    assert sorted(i["sk"]["S"] for i in items) == ["CURRENT", "V#000000000001"]
    calls: list[str] = []
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    assert table.current().rules == parsed.rules
    assert calls == ["GetItem"]


def test_an_unchanged_large_ruleset_is_not_read_again(dynamodb: Any) -> None:
    """The aggregator re-reads the pointer every minute: only a new version costs the chunks."""
    parsed = parse_rules(enumerate(ordinary_rows(3_000), start=2))
    table = RulesetTable(dynamodb, RULESET_TABLE)
    table.publish(Ruleset(1, parsed.rules, published_at="2026-11-01T00:00:00+00:00"), expected_version=0)
    reader = RulesetTable(dynamodb, RULESET_TABLE)
    assert reader.current().rules == parsed.rules
    calls: list[str] = []
    dynamodb.meta.events.register(
        "provide-client-params.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    assert reader.current().rules == parsed.rules
    assert calls == ["GetItem"]
