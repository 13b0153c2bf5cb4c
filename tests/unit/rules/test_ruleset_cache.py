"""The aggregator's ruleset cache: an outage of the ruleset table never stops counting once rules are loaded."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from pia.rules.ruleset import EMPTY_RULESET, Ruleset, RulesetCache, RulesetTable, RulesetUnavailable

LOADED = Ruleset(version=3, rules=())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyTable:
    """A DynamoDB client whose ``get_item`` answers once, then fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def get_item(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls > 1:
            raise self.error
        return {}


THROTTLED = ClientError(
    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "GetItem"
)
TIMED_OUT = ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


@pytest.mark.parametrize("error", [THROTTLED, TIMED_OUT], ids=["throttled", "read-timeout"])
def test_a_failed_refresh_keeps_the_rules_already_loaded(error: Exception) -> None:
    client = FlakyTable(error)
    clock = Clock()
    cache = RulesetCache(RulesetTable(client, "rulesets").current, ttl_seconds=60, monotonic=clock)  # type: ignore[arg-type]
    assert cache.get() == EMPTY_RULESET
    clock.now = 61
    assert cache.get() == EMPTY_RULESET
    assert client.calls == 2
    clock.now = 90
    assert cache.get() == EMPTY_RULESET and client.calls == 2, "the failed read waits a full TTL too"


@pytest.mark.parametrize("error", [THROTTLED, TIMED_OUT], ids=["throttled", "read-timeout"])
def test_the_table_reports_aws_failures_as_the_ruleset_being_unavailable(error: Exception) -> None:
    client = FlakyTable(error)
    table = RulesetTable(client, "rulesets")  # type: ignore[arg-type]
    table.current()
    with pytest.raises(RulesetUnavailable, match="ruleset table rulesets") as caught:
        table.current()
    assert caught.value.__cause__ is error


def test_with_nothing_loaded_yet_the_failure_is_raised() -> None:
    def unreadable() -> Ruleset:
        raise RulesetUnavailable("ruleset table rulesets: throttled")

    with pytest.raises(RulesetUnavailable, match="throttled"):
        RulesetCache(unreadable).get()


def test_rules_are_reread_after_the_ttl() -> None:
    versions = iter([EMPTY_RULESET, LOADED])
    clock = Clock()
    cache = RulesetCache(lambda: next(versions), ttl_seconds=60, monotonic=clock)
    assert cache.get() == EMPTY_RULESET
    clock.now = 59
    assert cache.get() == EMPTY_RULESET
    clock.now = 60
    assert cache.get() == LOADED and cache.reads == 2
