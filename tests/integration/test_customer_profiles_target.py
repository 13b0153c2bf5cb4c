"""The Customer Profiles target. moto has no Customer Profiles, so botocore's Stubber answers: every
request still passes botocore's validation against the customer-profiles model, each expected
request is matched exactly and in order, and every canned answer is checked against the model too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pia.core.actions import NOT_READY, READY, Action, ActionKind, action_id_for
from pia.settings import SettingsError, TargetSettings
from pia.targets.customer_profiles import CustomerProfilesTarget
from pia.targets.factory import build_targets

DOMAIN = "pia-customers"
KEY = "_userId"
OCCURRED = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
PROFILE_A = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
PROFILE_B = "f9e8d7c6b5a4938271605f4e3d2c1b0a"
PROFILE_C = "5555aaaa5555aaaa5555aaaa5555aaaa"


def action(
    n: int,
    user: str = "user-1001",
    output: str = "trk_purchase",
    kind: ActionKind = ActionKind.SET_ATTRIBUTE,
    value: str | None = READY,
) -> Action:
    return Action(
        action_id=action_id_for("rule", n),
        kind=kind,
        user_id=user,
        rule_id=f"rule-{output}",
        output_name=output,
        value=value,
        endpoint_ids=(),
        count=3,
        total=Decimal("42.50"),
        occurred_at=OCCURRED + timedelta(seconds=n),
    )


def model_limits(shape: Any, value: Any, path: str) -> list[str]:
    """What botocore's validator leaves to the service: maximum lengths, patterns and enums."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for name, member in value.items():
            problems += model_limits(shape.members[name], member, f"{path}.{name}")
    elif shape.type_name in ("list", "map"):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items is over {meta['max']}")
        if shape.type_name == "list":
            for i, item in enumerate(value):
                problems += model_limits(shape.member, item, f"{path}[{i}]")
        else:
            for key, item in value.items():
                problems += model_limits(shape.key, key, f"{path} key {key!r}")
                problems += model_limits(shape.value, item, f"{path}[{key!r}]")
    elif shape.type_name == "string":
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} characters is over {meta['max']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if "enum" in meta and value not in meta["enum"]:
            problems.append(f"{path}: {value!r} is not one of {meta['enum']}")
    elif shape.type_name == "integer" and "max" in meta and value > meta["max"]:
        problems.append(f"{path}: {value} is over {meta['max']}")
    return problems


def _check_limits(params: dict[str, Any], model: Any, **_: Any) -> None:
    problems = model_limits(model.input_shape, params, model.name)
    assert not problems, problems


@pytest.fixture
def client() -> Any:
    client = boto3.client("customer-profiles", region_name="us-east-1")
    client.meta.events.register("before-parameter-build.customer-profiles", _check_limits)
    return client


def test_the_limit_check_catches_what_botocore_does_not(client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_response("update_profile", {"ProfileId": PROFILE_A})
        with pytest.raises(AssertionError, match="over 255"):
            client.update_profile(DomainName=DOMAIN, ProfileId=PROFILE_A, Attributes={"trk_x": "v" * 256})


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_search(
    stub: Stubber,
    user: str,
    profile_ids: list[str],
    next_token: str | None = None,
    key: str = KEY,
    **extra: Any,
) -> None:
    response: dict[str, Any] = {
        "Items": [
            {
                "ProfileId": pid,
                "Attributes": {key: user},
                "FoundByItems": [{"KeyName": key, "Values": [user]}],
            }
            for pid in profile_ids
        ]
    }
    if next_token:
        response["NextToken"] = next_token
    stub.add_response(
        "search_profiles",
        response,
        {"DomainName": DOMAIN, "KeyName": key, "Values": [user], "MaxResults": 100, **extra},
    )


def expect_create(stub: Stubber, **fields: Any) -> None:
    stub.add_response("create_profile", {"ProfileId": PROFILE_C}, {"DomainName": DOMAIN, **fields})


def expect_update(stub: Stubber, profile_id: str, attributes: dict[str, str]) -> None:
    stub.add_response(
        "update_profile",
        {"ProfileId": profile_id},
        {"DomainName": DOMAIN, "ProfileId": profile_id, "Attributes": attributes},
    )


def test_a_found_profile_gets_all_of_the_users_attributes_in_one_update(client: Any, stub: Stubber) -> None:
    ready = action(1, output="trk_purchase")
    withdrawn = action(2, output="trk_date_visits", value=NOT_READY)
    fired = action(3, output="trk_course_completed", kind=ActionKind.FIRE_EVENT, value=None)
    expect_search(stub, "user-1001", [PROFILE_A])
    expect_update(
        stub,
        PROFILE_A,
        {
            "trk_purchase": "ready",
            "trk_date_visits": "not-ready",
            "trk_course_completed": "2026-11-02T09:15:03Z",
        },
    )

    result = CustomerProfilesTarget(client, DOMAIN, KEY).send([ready, withdrawn, fired])

    assert result.failed == {}


def test_each_user_is_searched_once_per_send_and_the_later_crossing_wins(client: Any, stub: Stubber) -> None:
    actions = [
        action(3, user="alice", output="trk_a", value=NOT_READY),
        action(2, user="bob", output="trk_a"),
        action(1, user="alice", output="trk_a"),
    ]
    expect_search(stub, "alice", [PROFILE_A])
    expect_update(stub, PROFILE_A, {"trk_a": "not-ready"})
    expect_search(stub, "bob", [PROFILE_B])
    expect_update(stub, PROFILE_B, {"trk_a": "ready"})

    assert CustomerProfilesTarget(client, DOMAIN, KEY).send(actions).failed == {}


def test_an_absent_profile_is_created_with_the_key_when_the_flag_allows(client: Any, stub: Stubber) -> None:
    expect_search(stub, "user-1001", [])
    expect_create(stub, Attributes={"trk_purchase": "ready", KEY: "user-1001"})

    result = CustomerProfilesTarget(client, DOMAIN, KEY, create_missing=True).send([action(1)])

    assert result.failed == {}


def test_a_created_profile_fills_the_standard_field_a_predefined_key_searches(
    client: Any, stub: Stubber
) -> None:
    expect_search(stub, "ACC-7", [], key="_account")
    expect_create(stub, AccountNumber="ACC-7", Attributes={"trk_purchase": "ready"})

    target = CustomerProfilesTarget(client, DOMAIN, "_account", create_missing=True)

    assert target.send([action(1, user="ACC-7")]).failed == {}


def test_an_absent_profile_without_the_flag_fails_with_a_clear_reason(client: Any, stub: Stubber) -> None:
    expect_search(stub, "user-1001", [])
    first, second = action(1), action(2, output="trk_other")

    result = CustomerProfilesTarget(client, DOMAIN, KEY).send([first, second])

    reason = "no profile has _userId='user-1001' in domain 'pia-customers'; create it upstream or set ProfilesCreateMissing=true"
    assert result.failed == {first.action_id: reason, second.action_id: reason}


def test_several_matching_profiles_are_all_updated_in_profile_id_order(client: Any, stub: Stubber) -> None:
    expect_search(stub, "user-1001", [PROFILE_B], next_token="page-2")
    expect_search(stub, "user-1001", [PROFILE_A, PROFILE_B], NextToken="page-2")
    expect_update(stub, PROFILE_A, {"trk_purchase": "ready"})
    expect_update(stub, PROFILE_B, {"trk_purchase": "ready"})

    assert CustomerProfilesTarget(client, DOMAIN, KEY).send([action(1)]).failed == {}


def test_a_key_that_finds_too_many_profiles_is_refused(client: Any, stub: Stubber) -> None:
    expect_search(stub, "user-1001", [f"{i:032x}" for i in range(11)])

    result = CustomerProfilesTarget(client, DOMAIN, KEY).send([action(1)])

    assert result.failed == {
        action(
            1
        ).action_id: "_userId='user-1001' finds more than 10 profiles; the profile key must identify one user"
    }


def test_a_refused_update_fails_only_that_users_actions(client: Any, stub: Stubber) -> None:
    expect_search(stub, "alice", [PROFILE_A])
    stub.add_client_error(
        "update_profile",
        service_error_code="ThrottlingException",
        service_message="Rate exceeded",
        http_status_code=429,
        expected_params={"DomainName": DOMAIN, "ProfileId": PROFILE_A, "Attributes": {"trk_a": "ready"}},
    )
    expect_search(stub, "bob", [PROFILE_B])
    expect_update(stub, PROFILE_B, {"trk_a": "ready"})
    alice, bob = action(1, user="alice", output="trk_a"), action(2, user="bob", output="trk_a")

    result = CustomerProfilesTarget(client, DOMAIN, KEY).send([alice, bob])

    assert result.failed == {alice.action_id: "UpdateProfile: ThrottlingException: Rate exceeded"}


def test_a_search_error_is_reported_with_the_operation(client: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "search_profiles",
        service_error_code="ResourceNotFoundException",
        service_message="Domain not found",
        http_status_code=404,
    )

    result = CustomerProfilesTarget(client, DOMAIN, KEY).send([action(1)])

    assert result.failed == {
        action(1).action_id: "SearchProfiles: ResourceNotFoundException: Domain not found"
    }


def test_a_user_id_longer_than_a_key_value_fails_without_a_request(client: Any, stub: Stubber) -> None:
    long_id = action(1, user="u" * 256)

    result = CustomerProfilesTarget(client, DOMAIN, KEY).send([long_id])

    assert result.failed == {
        long_id.action_id: "user id of 256 characters is over the profile key limit of 255"
    }


def test_build_targets_needs_a_domain_and_passes_the_key_and_flag() -> None:
    def factory(service: str, region_name: str | None = None) -> Any:
        client = boto3.client(service, region_name="us-east-1")  # type: ignore[call-overload]
        client.meta.events.register("before-parameter-build.customer-profiles", _check_limits)
        return client

    with pytest.raises(SettingsError, match="PROFILES_DOMAIN is required"):
        TargetSettings.from_env({"ACTION_TARGETS": "customer-profiles"})

    settings = TargetSettings.from_env(
        {
            "ACTION_TARGETS": "eventbridge, customer-profiles",
            "PROFILES_DOMAIN": DOMAIN,
            "PROFILES_KEY_NAME": "_account",
            "PROFILES_CREATE_MISSING": "true",
        }
    )
    eventbridge, profiles = build_targets(settings, factory)
    assert (eventbridge.name, profiles.name) == ("eventbridge", "customer-profiles")
    with Stubber(profiles._client) as stub:  # type: ignore[attr-defined]
        expect_search(stub, "ACC-1", [], key="_account")
        expect_create(stub, AccountNumber="ACC-1", Attributes={"trk_purchase": "ready"})
        assert profiles.send([action(1, user="ACC-1")]).failed == {}
        stub.assert_no_pending_responses()
