"""Shared fixtures: fake credentials, moto, the project's tables, and Lambda-shaped events."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pia.aws.clients import ClientFactory
from pia.aws.wiring import Wiring
from pia.rules.table import REQUIRED_COLUMNS
from pia_cli.emulator import create_table
from pia_cli.local_clients import LocalClients
from pia_cli.partiql_batches import partiql_batches

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "src", ROOT / "layer", ROOT / "cli"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

AGGREGATES_TABLE = "pia-aggregates"
RULESET_TABLE = "pia-ruleset"
TIMESERIES_TABLE = "pia-timeseries"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "pia-test")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "PiaTest")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(), partiql_batches():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, AGGREGATES_TABLE)
    create_table(client, RULESET_TABLE)
    create_table(client, TIMESERIES_TABLE, ttl=True)
    return client


@pytest.fixture
def function_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AGGREGATES_TABLE": AGGREGATES_TABLE,
        "RULESET_TABLE": RULESET_TABLE,
        "TIMESERIES_TABLE": TIMESERIES_TABLE,
        "PINPOINT_APP_ID": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
        "ACTION_TARGETS": "pinpoint",
        "MAX_RECORD_AGE_SECONDS": "86400",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def lambda_context() -> Any:
    class Context:
        function_name = "pia-test"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pia-test"
        aws_request_id = "00000000-0000-0000-0000-000000000000"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 60_000

    return Context()


RULE_HEADER = REQUIRED_COLUMNS


# The README's Case 1, 2 and 3, in RULE_HEADER order.
CASE_GREENBUTTON = (
    "aggregator",
    "greenbutton",
    "na",
    "na",
    "greater",
    "5",
    "na",
    "999",
    "no",
    "9999-99-99",
    "9999-99-99",
)
CASE_COURSE = (
    "aggregator",
    "course_completed",
    "na",
    "na",
    "equal",
    "3",
    "na",
    "999",
    "yes",
    "9999-99-99",
    "9999-99-99",
)
PURCHASE_NO_CONDITION = (
    "aggregator",
    "purchase",
    "na",
    "na",
    "na",
    "999",
    "na",
    "999",
    "no",
    "9999-99-99",
    "9999-99-99",
)
"""An aggregator rule on purchase with no condition: the base of an ``Output = value`` row."""
CASE_PURCHASE = (
    "date",
    "purchase",
    "na",
    "na",
    "na",
    "999",
    "greater",
    "500",
    "no",
    "2021-01-01",
    "2021-02-01",
)


def rule_row(*cells: str, **extra: str) -> dict[str, str]:
    """A rule-table row from the 11 standard cells in table order, plus optional named columns."""
    row = dict(zip(RULE_HEADER, cells, strict=True))
    row.update(extra)
    return row


def publish_rows(client: Any, rows: list[dict[str, str]], table: str = RULESET_TABLE) -> Any:
    """Parse and publish rows as the next ruleset version; returns the ParseResult."""
    from pia.rules.ruleset import Ruleset, RulesetTable
    from pia.rules.table import parse_rules

    parsed = parse_rules(enumerate(rows, start=2))
    store = RulesetTable(client, table)
    current = store.current()
    store.publish(
        Ruleset(version=current.version + 1, rules=parsed.rules, published_at="2026-11-01T00:00:00+00:00"),
        expected_version=current.version,
    )
    return parsed


def moto_client(service: str, region_name: str | None = None) -> Any:
    return boto3.client(service, region_name=region_name or "us-east-1")  # type: ignore[call-overload]


def handler_clients(recorder: Any = None, base: ClientFactory = moto_client) -> LocalClients:
    """A handler's clients in tests: moto, AWS's request limits enforced, Pinpoint answered by the
    validating recorder when one is given."""
    overrides = {"pinpoint": lambda _region: recorder.client()} if recorder is not None else {}
    return LocalClients("pia-test", base=base, overrides=overrides)


@pytest.fixture
def recorder() -> Any:
    from pia_cli.recorder import PinpointRecorder

    return PinpointRecorder()


@pytest.fixture
def aggregator_app(
    dynamodb: Any, function_env: dict[str, str], recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The aggregator handler module, wired to moto and a validating Pinpoint recorder."""
    from aggregator import app

    with app.container.wired(Wiring(handler_clients(recorder))):
        yield app


@pytest.fixture
def relay_app(dynamodb: Any, function_env: dict[str, str], recorder: Any) -> Any:
    """The action relay handler module, wired like ``aggregator_app``."""
    from action_relay import app

    with app.container.wired(Wiring(handler_clients(recorder))):
        yield app


def later(app: Any, minutes: int) -> None:
    """From now on ``app`` runs ``minutes`` from now (its clock, not its clients, changes)."""
    moment = datetime.now(UTC) + timedelta(minutes=minutes)
    app.container.rewire(Wiring(app.container.wiring.clients, lambda: moment))


RULES_BUCKET = "pia-rules-123456789012-us-east-1"


@pytest.fixture
def rule_poller_app(dynamodb: Any, function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The rule poller handler on moto: spreadsheet source in RULES_BUCKET under rules/ (the bucket
    the sample S3 event names). Tests switch to Honeycode with RULE_SOURCE and a stubbed client."""
    from rule_poller import app

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=RULES_BUCKET)
    env = {
        "RULE_SOURCE": "spreadsheet",
        "RULES_BUCKET": RULES_BUCKET,
        "RULES_PREFIX": "rules/",
        "REMOVED_RULE_GRACE_HOURS": "24",
        "TIMEZONE": "UTC",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with app.container.wired(Wiring(handler_clients())):
        yield app


@pytest.fixture
def timeseries_stack(
    dynamodb: Any, function_env: dict[str, str], recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Aggregator and evaluator handlers with a raw events bucket, a settable clock and counting
    clients (tests/integration/timeseries_support.py)."""
    from tests.integration.timeseries_support import Stack

    stack = Stack(dynamodb, recorder, monkeypatch)
    yield stack
    stack.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A handler invocation that publishes no metric (Powertools warns "No application metrics") is a
    handler bug, not noise: in the integration tests it fails the test."""
    empty = pytest.mark.filterwarnings("error:No application metrics:UserWarning")
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(empty)
