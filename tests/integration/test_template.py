"""What a security reviewer checks in template.yaml, before and after the SAM transform expands it."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode
from samtranslator.translator.transform import transform

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

# Actions AWS only authorises on Resource "*" (they have no resource-level permissions).
WILDCARD_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    # The evaluator state machine's tracing and vended log delivery (Step Functions' documented policy):
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


@cache
def _source() -> dict[str, Any]:
    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert template is not None
    return dict(template)


@pytest.fixture
def source() -> dict[str, Any]:
    return copy.deepcopy(_source())


@pytest.fixture
def expanded(source: dict[str, Any]) -> dict[str, Any]:
    """The template as CloudFormation receives it, so SAM-generated roles and policies are checked too."""

    def no_managed_policies() -> dict[str, str]:
        raise AssertionError("the template must not use SAM policy shortcuts that need AWS managed policies")

    for resource in source["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://bucket/code.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://bucket/layer.zip"
    return dict(transform(source, {}, no_managed_policies))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            yield f"{name} trust", props["AssumeRolePolicyDocument"]
            for policy in props.get("Policies", []):
                yield f"{name}/{policy['PolicyName']}", policy["PolicyDocument"]
        elif kind in {
            "AWS::IAM::ManagedPolicy",
            "AWS::IAM::Policy",
            "AWS::S3::BucketPolicy",
            "AWS::SQS::QueuePolicy",
        }:
            yield name, props["PolicyDocument"]


def _allow_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, document in _policy_documents(template):
        for statement in _as_list(document["Statement"]):
            assert isinstance(statement, dict), f"{where}: statement is not a plain object: {statement!r}"
            if statement["Effect"] == "Allow":
                yield where, statement


@pytest.mark.parametrize("which", ["source", "expanded"])
def test_no_wildcard_actions_are_granted(which: str, request: pytest.FixtureRequest) -> None:
    template = request.getfixturevalue(which)
    granted = [
        (where, action)
        for where, statement in _allow_statements(template)
        for action in _as_list(statement["Action"])
        if action == "*" or action.endswith(":*")
    ]
    assert granted == []


@pytest.mark.parametrize("which", ["source", "expanded"])
def test_wildcard_resources_are_only_for_actions_without_resource_level_permissions(
    which: str, request: pytest.FixtureRequest
) -> None:
    template = request.getfixturevalue(which)
    statements = list(_allow_statements(template))
    assert statements, "no Allow statements found: the walker is broken"
    too_broad = [
        (where, statement["Action"])
        for where, statement in statements
        if "Principal" not in statement
        and "*" in _as_list(statement["Resource"])
        and not set(_as_list(statement["Action"])) <= WILDCARD_RESOURCE_ACTIONS
    ]
    assert too_broad == []


def test_functions_use_their_own_role_and_no_sam_policy_shortcuts(source: dict[str, Any]) -> None:
    functions = {n: r for n, r in source["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert len(functions) == 4
    roles = {name: fn["Properties"]["Role"]["Fn::GetAtt"][0] for name, fn in functions.items()}
    assert len(set(roles.values())) == len(roles), roles
    for name, fn in functions.items():
        assert "Policies" not in fn["Properties"], name
        assert source["Resources"][roles[name]]["Type"] == "AWS::IAM::Role"


def test_functions_log_to_their_own_log_group_with_retention(source: dict[str, Any]) -> None:
    resources = source["Resources"]
    for name, fn in resources.items():
        if fn["Type"] != "AWS::Serverless::Function":
            continue
        group = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup", name
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert resources[group]["Properties"]["LogGroupName"] == {
            "Fn::Sub": "/aws/lambda/" + fn["Properties"]["FunctionName"]["Fn::Sub"]
        }, name


def test_every_table_is_on_demand_recoverable_encrypted_and_retained(source: dict[str, Any]) -> None:
    tables = {n: r for n, r in source["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(tables) == {"AggregatesTable", "RulesetTable", "TimeSeriesTable"}
    for name, table in tables.items():
        props = table["Properties"]
        assert table.get("DeletionPolicy") == "Retain", name
        assert table.get("UpdateReplacePolicy") == "Retain", name
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        assert "TableName" not in props, f"{name}: names must derive from the stack"
        assert props["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ], name
    assert tables["TimeSeriesTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "ttl",
        "Enabled": True,
    }


def test_buckets_are_private_encrypted_and_tls_only(source: dict[str, Any]) -> None:
    resources = source["Resources"]
    buckets = {n for n, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    assert buckets == {"RawEventsBucket", "RulesBucket", "BackfillResultsBucket"}
    tls_only = {
        r["Properties"]["Bucket"]["Ref"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
        and any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in r["Properties"]["PolicyDocument"]["Statement"]
        )
    }
    assert tls_only == buckets
    for name in buckets:
        props = resources[name]["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values()), name
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
        assert resources[name]["DeletionPolicy"] == "Retain", name
    assert resources["RulesBucket"]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_aggregator_mapping_reports_failures_bisects_and_bounds_retries(source: dict[str, Any]) -> None:
    events = source["Resources"]["AggregatorFunction"]["Properties"]["Events"]
    (stream,) = [e["Properties"] for e in events.values() if e["Type"] == "Kinesis"]
    parameters = source["Parameters"]
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["BisectBatchOnFunctionError"] is True
    # -1 means "forever" to Lambda: the parameters must not admit it.
    retries = parameters[stream["MaximumRetryAttempts"]["Ref"]]
    assert int(retries["MinValue"]) >= 0 and int(retries["MaxValue"]) <= 10_000
    age = parameters[stream["MaximumRecordAgeInSeconds"]["Ref"]]
    assert int(age["MinValue"]) >= 60 and int(age["MaxValue"]) <= 604_800
    on_failure = stream["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    queue = on_failure["Destination"]["Fn::GetAtt"][0]
    assert source["Resources"][queue]["Type"] == "AWS::SQS::Queue"
    for setting in (
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "ParallelizationFactor",
        "StartingPosition",
    ):
        assert stream[setting] == {"Ref": setting}


def test_aggregator_may_send_to_its_failure_queue_and_nothing_broader(source: dict[str, Any]) -> None:
    policy = source["Resources"]["AggregatorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    sqs = [s for s in policy["Statement"] if any(a.startswith("sqs:") for a in _as_list(s["Action"]))]
    assert sqs == [
        {
            "Sid": "OnFailureDestination",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["FailureQueue", "Arn"]},
        }
    ]


def _evaluate(node: Any, parameters: dict[str, str], conditions: dict[str, Any]) -> Any:
    """The handful of intrinsic functions the target conditions use, evaluated like CloudFormation does."""
    if not isinstance(node, dict):
        return node
    ((fn, args),) = node.items()
    if fn == "Ref":
        return parameters[args]
    if fn == "Condition":
        return _evaluate(conditions[args], parameters, conditions)
    values = [_evaluate(a, parameters, conditions) for a in _as_list(args)]
    if fn == "Fn::Split":
        return values[1].split(values[0])
    if fn == "Fn::Join":
        return values[0].join(values[1])
    if fn == "Fn::Equals":
        return values[0] == values[1]
    if fn == "Fn::Not":
        return not values[0]
    if fn == "Fn::And":
        return all(values)
    if fn == "Fn::Or":
        return any(values)
    raise AssertionError(f"unexpected intrinsic {fn}")


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ("pinpoint", {"TargetPinpoint"}),
        ("eventbridge", {"TargetEventBridge"}),
        ("customer-profiles", {"TargetProfiles"}),
        ("eventbridge,customer-profiles", {"TargetEventBridge", "TargetProfiles"}),
        (
            "pinpoint, eventbridge,customer-profiles",
            {"TargetPinpoint", "TargetEventBridge", "TargetProfiles"},
        ),
    ],
)
def test_target_conditions_match_the_action_targets_list(
    source: dict[str, Any], targets: str, expected: set[str]
) -> None:
    assert re.fullmatch(source["Parameters"]["ActionTargets"]["AllowedPattern"], targets)
    conditions = source["Conditions"]
    met = {
        name
        for name in ("TargetPinpoint", "TargetEventBridge", "TargetProfiles")
        if _evaluate(conditions[name], {"ActionTargets": targets}, conditions)
    }
    assert met == expected


def test_target_permissions_exist_only_behind_their_conditions(source: dict[str, Any]) -> None:
    resources = source["Resources"]
    senders = {"AggregatorRole", "ActionRelayRole", "EvaluatorRole"}
    by_condition = {
        "PinpointTargetAccess": "mobiletargeting:",
        "TargetEventBridge": "events:",
        "ProfilesTargetAccess": "profile:",
        "UseHoneycode": "honeycode:",
    }
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::ManagedPolicy":
            continue
        actions = [
            a for s in resource["Properties"]["PolicyDocument"]["Statement"] for a in _as_list(s["Action"])
        ]
        prefix = by_condition[resource["Condition"]]
        assert actions and all(a.startswith(prefix) for a in actions), name
        roles = {r["Ref"] for r in resource["Properties"]["Roles"]}
        assert roles == ({"RulePollerRole"} if prefix == "honeycode:" else senders), name
    inline = [
        a
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Role"
        for p in r["Properties"].get("Policies", [])
        for s in p["PolicyDocument"]["Statement"]
        for a in _as_list(s["Action"])
    ]
    assert not [a for a in inline if a.startswith(tuple(by_condition.values()))]


def test_every_checkov_skip_is_justified(source: dict[str, Any]) -> None:
    skips = [
        (name, skip)
        for name, resource in source["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    unjustified = [(name, s["id"]) for name, s in skips if len(str(s.get("comment", "")).split()) < 8]
    assert unjustified == []


def test_the_glue_table_reads_the_archive_as_written_and_as_the_backfill_query_expects(
    source: dict[str, Any],
) -> None:
    from pia.timeseries.archive import hour_prefix
    from pia.timeseries.backfill_sql import ARCHIVE_COLUMNS, PARTITION, RAW_EVENTS_TABLE

    table = source["Resources"]["RawEventsTable"]["Properties"]["TableInput"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert (table["Name"], columns) == (RAW_EVENTS_TABLE, dict(ARCHIVE_COLUMNS))
    assert [k["Name"] for k in table["PartitionKeys"]] == [PARTITION]
    parameters = table["Parameters"]
    location = parameters["storage.location.template"]["Fn::Sub"]
    assert location == "s3://${RawEventsBucket}/raw/${!datehour}/"
    projected = datetime(2026, 3, 1, 5, tzinfo=UTC).strftime(
        parameters["projection.datehour.format"]
        .replace("yyyy", "%Y")
        .replace("MM", "%m")
        .replace("dd", "%d")
        .replace("HH", "%H")
    )
    assert f"raw/{projected}/" == hour_prefix(datetime(2026, 3, 1, 5, tzinfo=UTC))
    assert parameters["projection.datehour.interval.unit"] == "HOURS"


def test_the_evaluator_may_query_only_its_own_workgroup_catalog_table_and_results(
    source: dict[str, Any],
) -> None:
    statements = {
        s["Sid"]: s
        for policy in source["Resources"]["EvaluatorRole"]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    }
    assert statements["BackfillQueries"]["Resource"]["Fn::Sub"].endswith(
        ":workgroup/${AWS::StackName}-backfill"
    )
    assert not any(
        a.startswith("glue:") and not a.startswith("glue:Get")
        for a in statements["BackfillCatalog"]["Action"]
    )
    environment = source["Resources"]["EvaluatorFunction"]["Properties"]["Environment"]["Variables"]
    workgroup = source["Resources"]["BackfillWorkGroup"]["Properties"]["Name"]
    assert environment["ATHENA_WORKGROUP"] == workgroup
    assert (
        environment["GLUE_DATABASE"]
        == source["Resources"]["RawEventsDatabase"]["Properties"]["DatabaseInput"]["Name"]
    )


TARGETS_AVAILABLE_TODAY = {"eventbridge", "customer-profiles"}
"""Pinpoint's endpoint and event APIs reached end of support on 2026-10-30; these work in any account."""


def test_deployed_with_no_overrides_every_default_target_exists_today() -> None:
    """A new user's first deploy must work: the defaults alone give a target that exists in every
    account, and the resource it needs (the default event bus) is there."""
    from pia.settings import AggregatorSettings
    from pia.targets.factory import build_targets
    from pia_cli.deploy import deploy
    from pia_cli.emulator import embedded_emulator

    with embedded_emulator() as emulator:
        deployment = deploy(TEMPLATE, "pia-defaults", {}, region=emulator.region)
        environment = deployment.function("aggregator").environment
        settings = AggregatorSettings.from_env(environment).targets
        targets = build_targets(
            settings,
            lambda service, region_name=None: boto3.client(
                service, region_name=region_name or emulator.region
            ),
        )
        events = boto3.client("events", region_name=emulator.region)
        bus = events.describe_event_bus(Name=settings.event_bus_name)

    assert {t.name for t in targets} <= TARGETS_AVAILABLE_TODAY and targets
    assert bus["Name"] == "default"
    assert environment["PINPOINT_APP_ID"] == "", "the default path needs no Pinpoint project"


def test_samconfig_and_the_guided_prompts_lead_with_a_target_that_exists_today(
    source: dict[str, Any],
) -> None:
    samconfig = tomllib.loads((TEMPLATE.parent / "samconfig.toml").read_text())
    overrides = samconfig["default"]["deploy"]["parameters"]["parameter_overrides"]
    chosen = next(o.split("=", 1)[1] for o in overrides if o.startswith("ActionTargets="))

    assert set(chosen.split(",")) <= TARGETS_AVAILABLE_TODAY
    assert next(iter(source["Parameters"])) == "ActionTargets"
    groups = source["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert groups[0]["Parameters"][0] == "ActionTargets"
