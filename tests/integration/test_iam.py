"""Each function runs under its template role locally, as in Lambda (issue #15, "IAM enforced locally").

The stack is deployed from template.yaml on the embedded emulator; the functions' clients check
every call against the role CloudFormation created, so a role missing an action its code calls
fails here, as it would in AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from pia.core.actions import Action, ActionKind
from pia.core.state import Pending
from pia.counting.counters import CounterState
from pia.counting.store import counter_item
from pia.targets.relay import RelayFailed
from pia_cli.emulator import embedded_emulator
from pia_cli.iam import Request, RolePolicies, authorizations
from pia_cli.local_stack import LOCAL_PINPOINT_APP, TEMPLATE, LocalStack

NOW = datetime(2026, 4, 30, 12, tzinfo=UTC)


def _stack(template: Path) -> Iterator[LocalStack]:
    with embedded_emulator():
        stack = LocalStack.deploy(
            "pia-iam",
            {"PinpointApplicationId": LOCAL_PINPOINT_APP, "ActionTargets": "pinpoint"},
            template=template,
            clock=lambda: NOW,
        )
        with stack:
            yield stack


def _template_without(tmp_path: Path, role: str, action: str) -> Path:
    """template.yaml with ``action`` taken out of ``role``'s policy (and only there)."""
    text = TEMPLATE.read_text()
    start = text.index(f"\n  {role}:\n")
    end = text.index("\n  # ----", start)
    line = f"                  - {action}\n"
    section = text[start:end]
    assert line in section, f"{role} does not grant {action}"
    (tmp_path / "template.yaml").write_text(text[:start] + section.replace(line, "", 1) + text[end:])
    for directory in ("src", "layer"):
        (tmp_path / directory).symlink_to(TEMPLATE.parent / directory)
    return tmp_path / "template.yaml"


def _refused_action(stack: LocalStack) -> None:
    """An action a target refused long ago, still owed by its counter and due for the relay: the next
    relay run claims it (a conditional Put), then sends it."""
    table = stack.deployment.function("action_relay").environment["AGGREGATES_TABLE"]
    action = Action(
        "act-1",
        ActionKind.SET_ATTRIBUTE,
        "user-1",
        "rule-1",
        "trk_greenbutton",
        "ready",
        ("ep-user-1",),
        6,
        Decimal(6),
        NOW - timedelta(hours=1),
        lane="shardId-000000000000",
    )
    due = int((NOW - timedelta(hours=1)).timestamp())
    state = CounterState(
        "rule-1",
        "user-1",
        version=1,
        count=6,
        ready=True,
        fired=1,
        settled=True,
        endpoints=("ep-user-1",),
        pending=(Pending(action, "pinpoint", attempts=1),),
        due=due,
    )
    item = counter_item(state, due)
    boto3.client("dynamodb", region_name=stack.deployment.region).put_item(TableName=table, Item=item)


def test_the_action_relay_delivers_a_refused_action_under_its_role() -> None:
    """Defect 1 of issue #15: the relay could not claim under its role. It claims with a conditional
    Put now, and reads the sparse pending index."""
    for stack in _stack(TEMPLATE):
        _refused_action(stack)

        result = stack.run_scheduled("action_relay")

        assert result == {"pending": 1, "delivered": 1, "failed": 0}
        assert stack.pinpoint.user_attributes["user-1"] == {"trk_greenbutton": "ready"}


def test_a_role_without_an_action_its_code_calls_fails_the_run(tmp_path: Path) -> None:
    template = _template_without(tmp_path, "ActionRelayRole", "dynamodb:PartiQLUpdate")
    for stack in _stack(template):
        _refused_action(stack)

        with pytest.raises(RelayFailed) as refused:
            stack.run_scheduled("action_relay")

        message = str(refused.value)
        assert message.startswith("AccessDeniedException")
        assert "assumed-role/pia-iam-ActionRelayRole-" in message
        assert (
            "is not authorized to perform: dynamodb:PartiQLUpdate on resource: arn:aws:dynamodb:" in message
        )
        assert stack.pinpoint.calls == {}


def _request(prefix: str, operation: str, **params: Any) -> list[tuple[str, str]]:
    return list(authorizations(Request(prefix, operation, params, "us-east-1", "123456789012")))


def test_a_transaction_is_authorized_item_by_item_as_in_aws() -> None:
    items = [
        {"Put": {"TableName": "a", "Item": {}}},
        {"Update": {"TableName": "b", "Key": {}}},
        {"ConditionCheck": {"TableName": "a", "Key": {}}},
    ]

    assert _request("dynamodb", "TransactWriteItems", TransactItems=items) == [
        ("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/a"),
        ("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/b"),
        ("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:us-east-1:123456789012:table/a"),
    ]
    assert _request("s3", "HeadObject", Bucket="b", Key="rules/x.csv") == [
        ("s3:GetObject", "arn:aws:s3:::b/rules/x.csv")
    ]
    assert _request("dynamodb", "Query", TableName="t", IndexName="i") == [
        ("dynamodb:Query", "arn:aws:dynamodb:us-east-1:123456789012:table/t/index/i")
    ]


def test_an_explicit_deny_wins_and_nothing_unlisted_is_allowed() -> None:
    allow = '{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}]}'
    deny = '{"Statement": [{"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"}]}'
    role = RolePolicies("arn:aws:iam::123456789012:role/r", (allow, deny))

    assert role.allows("s3:GetObject", "arn:aws:s3:::b/k")
    assert not role.allows("s3:PutObject", "arn:aws:s3:::b/k")
    assert not role.allows("s3:GetObject", "arn:aws:s3:::other/k")
