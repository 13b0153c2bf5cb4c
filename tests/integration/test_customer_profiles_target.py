"""The Customer Profiles target. moto has no Customer Profiles, so botocore's Stubber answers: every
request still passes botocore's validation against the customer-profiles model, each expected
request is matched exactly and in order, and every canned answer is checked against the model too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pia.core.actions import NOT_READY, READY, Action, ActionKind, action_id_for
from pia.settings import SettingsError, TargetSettings
from pia.targets.customer_profiles import CustomerProfilesTarget, UnfillableKey
from pia.targets.factory import build_targets
from pia_cli.recorder import ProfilesRecorder, model_violations

DOMAIN = "pia-customers"
KEY = "_account"
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


def _check_limits(params: dict[str, Any], model: Any, **_: Any) -> None:
    problems = model_violations(model.input_shape, params, model.name)
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


def test_an_absent_profile_is_created_with_the_standard_field_the_default_key_indexes(
    client: Any, stub: Stubber
) -> None:
    expect_search(stub, "user-1001", [])
    expect_create(stub, AccountNumber="user-1001", Attributes={"trk_purchase": "ready"})

    result = CustomerProfilesTarget(client, DOMAIN, create_missing=True).send([action(1)])

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

    reason = "no profile has _account='user-1001' in domain 'pia-customers'; create it upstream or set ProfilesCreateMissing=true"
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
        ).action_id: "_account='user-1001' finds more than 10 profiles; the profile key must identify one user"
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


@pytest.mark.parametrize("key", ["_userId", "_segmentUserId", "customerId"])
def test_creating_profiles_is_refused_for_a_key_create_profile_cannot_fill(client: Any, key: str) -> None:
    with pytest.raises(UnfillableKey, match="could never be found again"):
        CustomerProfilesTarget(client, DOMAIN, key, create_missing=True)
    settings = TargetSettings(
        action_targets=("customer-profiles",),
        profiles_domain=DOMAIN,
        profiles_key_name=key,
        profiles_create_missing=True,
    )
    with pytest.raises(SettingsError, match="ProfilesCreateMissing=true needs a ProfilesKeyName"):
        build_targets(settings, lambda service, region_name=None: client)


def test_a_key_from_an_integration_finds_profiles_without_creating_any() -> None:
    """Lookup-only keys (such as the Segment integration's ``_segmentUserId``) work when the domain
    already fills them."""
    recorder = ProfilesRecorder(key_name="_segmentUserId")
    client = recorder.client()
    profile_id = client.create_profile(DomainName=DOMAIN, FirstName="Ada")["ProfileId"]
    client.add_profile_key(
        DomainName=DOMAIN, ProfileId=profile_id, KeyName="_segmentUserId", Values=["seg-1"]
    )

    result = CustomerProfilesTarget(client, DOMAIN, "_segmentUserId").send([action(1, user="seg-1")])

    assert result.failed == {}
    assert recorder.user_attributes() == {"seg-1": {"trk_purchase": "ready"}}


def test_the_stand_in_finds_a_profile_only_by_a_key_that_indexes_it() -> None:
    recorder = ProfilesRecorder()
    client = recorder.client()
    client.create_profile(DomainName=DOMAIN, AccountNumber="user-1", Attributes={"_userId": "user-1"})

    def found(key: str, value: str) -> int:
        return len(client.search_profiles(DomainName=DOMAIN, KeyName=key, Values=[value])["Items"])

    assert found("_account", "user-1") == 1
    assert found("_userId", "user-1") == 0  # an Attributes entry is not a search key


def test_the_default_key_creates_one_profile_per_user_however_often_it_is_sent() -> None:
    """The defect: with the old ``_userId`` default, the user id went into ``Attributes``, which no
    search reads, so every send created another profile for the same user."""
    recorder = ProfilesRecorder()
    target = CustomerProfilesTarget(recorder.client(), DOMAIN, create_missing=True)

    assert target.send([action(1)]).failed == {}
    assert target.send([action(2, output="trk_other")]).failed == {}

    assert len(recorder.profiles) == 1
    assert recorder.user_attributes() == {"user-1001": {"trk_purchase": "ready", "trk_other": "ready"}}


def test_the_stand_in_refuses_what_the_model_forbids_as_the_service_would() -> None:
    recorder = ProfilesRecorder()
    target = CustomerProfilesTarget(recorder.client(), DOMAIN, create_missing=True)
    too_long = action(1, value="v" * 256)

    result = target.send([too_long])

    assert "BadRequestException" in result.failed[too_long.action_id]
    assert "over 255" in result.failed[too_long.action_id]
