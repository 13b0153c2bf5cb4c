"""A function's IAM role, enforced on its local calls as AWS would enforce it.

moto can enforce IAM itself (``INITIAL_NO_AUTH_ACTION_COUNT``, ``moto.core.enable_iam_authentication``)
for requests signed with an IAM user's or an assumed role's keys, but not for this engine:

- for every service but S3, SQS, IAM and STS it authorizes against the resource ``*``, so a
  statement scoped to a table ARN never matches and a least-privilege role is denied everything;
- it authorizes ``dynamodb:TransactWriteItems``, which is not an IAM action: AWS authorizes each
  item of a transaction as ``PutItem``, ``UpdateItem``, ``DeleteItem`` or ``ConditionCheckItem``;
- it authorizes ``dynamodb:BatchExecuteStatement``, which is not an IAM action either: AWS
  authorizes each statement as ``PartiQLInsert``, ``PartiQLUpdate``, ``PartiQLDelete`` or
  ``PartiQLSelect`` on its table;
- Pinpoint and Customer Profiles never reach it (local stand-ins answer them).

So the request is authorized here, in a ``before-call`` check on the function's own clients: the
actions and resource ARNs AWS would authorize are derived from the request, and the role's
policies as CloudFormation created them in the emulator are evaluated with moto's own policy
evaluator. A call the role does not allow fails with ``AccessDeniedException`` (``AccessDenied``
for S3), as it would in Lambda.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from moto.iam.access_control import IAMPolicy, PermissionResult

from pia_cli.partiql_batches import partiql_target
from pia_cli.recorder import error_response
from pia_cli.request_checks import API_PARAMS, CLIENT_REGION

TRANSACTION_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
PARTIQL_ACTIONS = {"INSERT": "PartiQLInsert", "UPDATE": "PartiQLUpdate", "DELETE": "PartiQLDelete"}
"""AWS authorizes each statement of a ``BatchExecuteStatement`` by its verb, on its table."""
S3_ACTIONS = {
    "GetObject": "GetObject",
    "HeadObject": "GetObject",
    "PutObject": "PutObject",
    "DeleteObject": "DeleteObject",
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
}


@dataclass(frozen=True)
class Request:
    prefix: str
    operation: str
    params: Mapping[str, Any]
    region: str
    account: str

    def arn(self, service: str, resource: str, region: str | None = None) -> str:
        place = self.region if region is None else region
        return f"arn:aws:{service}:{place}:{self.account}:{resource}"


def authorizations(request: Request) -> Iterator[tuple[str, str]]:
    """(action, resource ARN) pairs AWS checks for one request."""
    p, op = request.params, request.operation
    if request.prefix == "dynamodb":
        yield from _dynamodb(request)
    elif request.prefix == "s3":
        bucket = p.get("Bucket", "*")
        action = S3_ACTIONS.get(op, op)
        resource = f"arn:aws:s3:::{bucket}/{p['Key']}" if "Key" in p else f"arn:aws:s3:::{bucket}"
        yield f"s3:{action}", resource
    elif request.prefix == "mobiletargeting":
        yield f"mobiletargeting:{op}", request.arn("mobiletargeting", f"apps/{p.get('ApplicationId', '*')}")
    elif request.prefix == "profile":
        yield f"profile:{op}", request.arn("profile", f"domains/{p.get('DomainName', '*')}")
    elif request.prefix == "events" and op == "PutEvents":
        for entry in p.get("Entries", []):
            bus = entry.get("EventBusName") or "default"
            yield (
                "events:PutEvents",
                bus if bus.startswith("arn:") else request.arn("events", f"event-bus/{bus}"),
            )
    elif request.prefix == "sqs" and "QueueUrl" in p:
        name = urlparse(p["QueueUrl"]).path.rsplit("/", 1)[-1]
        yield f"sqs:{op}", request.arn("sqs", name)
    elif request.prefix == "kinesis" and ("StreamARN" in p or "StreamName" in p):
        yield f"kinesis:{op}", p.get("StreamARN") or request.arn("kinesis", f"stream/{p['StreamName']}")
    elif request.prefix == "honeycode":
        table = f"table:workbook/{p.get('workbookId', '*')}/table/{p.get('tableId', '*')}"
        yield f"honeycode:{op}", request.arn("honeycode", table, "us-west-2")
    else:
        yield f"{request.prefix}:{op}", "*"


def _dynamodb(request: Request) -> Iterator[tuple[str, str]]:
    p, op = request.params, request.operation

    def table(name: str) -> str:
        return request.arn("dynamodb", f"table/{name}")

    if op == "TransactWriteItems":
        for item in p.get("TransactItems", []):
            for kind, body in item.items():
                yield f"dynamodb:{TRANSACTION_ACTIONS[kind]}", table(body["TableName"])
    elif op == "TransactGetItems":
        for item in p.get("TransactItems", []):
            yield "dynamodb:GetItem", table(item["Get"]["TableName"])
    elif op == "BatchExecuteStatement":
        for statement in p.get("Statements", []):
            kind, name = partiql_target(statement["Statement"])
            yield f"dynamodb:{PARTIQL_ACTIONS.get(kind, 'PartiQLSelect')}", table(name)
    elif op in ("BatchWriteItem", "BatchGetItem"):
        for name in p.get("RequestItems", {}):
            yield f"dynamodb:{op}", table(name)
    elif "IndexName" in p:
        yield f"dynamodb:{op}", f"{table(p['TableName'])}/index/{p['IndexName']}"
    else:
        yield f"dynamodb:{op}", table(p.get("TableName", "*"))


@dataclass(frozen=True)
class RolePolicies:
    """The identity policies of one role (inline and attached), as documents."""

    role_arn: str
    documents: tuple[str, ...]

    @staticmethod
    def of_role(iam: Any, role_arn: str) -> RolePolicies:
        name = role_arn.rsplit("/", 1)[-1]
        documents = [
            iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
        ]
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
            documents.append(
                iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"][
                    "Document"
                ]
            )
        return RolePolicies(role_arn, tuple(_text(d) for d in documents))

    def allows(self, action: str, resource: str) -> bool:
        """IAM's rule: an explicit deny wins, else some statement must allow."""
        allowed = False
        for document in self.documents:
            result = IAMPolicy(document).is_action_permitted(action, resource)
            if result == PermissionResult.DENIED:
                return False
            allowed = allowed or result == PermissionResult.PERMITTED
        return allowed


def _text(document: Any) -> str:
    """A policy as JSON text. moto's CloudFormation stores a role's inline policies as the Python
    repr of the document, not as JSON, so that form is read too."""
    if isinstance(document, str):
        text = unquote(document) if document.startswith("%7B") else document
        try:
            json.loads(text)
        except ValueError:
            return json.dumps(ast.literal_eval(text))
        return text
    return json.dumps(document)


class RoleCheck:
    """The ``before-call`` check that makes a client act under a role (a Lambda execution role)."""

    def __init__(self, policies: RolePolicies, session_name: str) -> None:
        self.policies = policies
        parts = policies.role_arn.split(":")
        self._account = parts[4]
        self._principal = (
            f"arn:aws:sts::{self._account}:assumed-role/{policies.role_arn.rsplit('/', 1)[-1]}/{session_name}"
        )

    def __call__(self, model: Any, params: Mapping[str, Any], **kwargs: Any) -> Any:
        context = kwargs.get("context") or {}
        request = Request(
            model.service_model.signing_name,
            model.name,
            context.get(API_PARAMS, {}),
            context.get(CLIENT_REGION) or "us-east-1",
            self._account,
        )
        for action, resource in authorizations(request):
            if not self.policies.allows(action, resource):
                code, status = (
                    ("AccessDenied", 403) if request.prefix == "s3" else ("AccessDeniedException", 400)
                )
                message = (
                    f"User: {self._principal} is not authorized to perform: {action} on resource: "
                    f"{resource} because no identity-based policy allows the {action} action"
                )
                return error_response(status, code, message)
        return None


NAMED_RESOURCES = (
    "AGGREGATES_TABLE",
    "RULESET_TABLE",
    "TIMESERIES_TABLE",
    "RAW_EVENTS_BUCKET",
    "RULES_BUCKET",
    "BACKFILL_RESULTS_BUCKET",
)
"""The variables that name the stack's tables and buckets, which its role policies name too."""


@dataclass(frozen=True)
class TemplateRoles:
    """Every function's role as CloudFormation created it from template.yaml, for runs that keep
    their own tables and buckets (the reliability suite): the policies are pointed at the run's
    resource names instead of the stack's."""

    policies: Mapping[str, RolePolicies]
    names: Mapping[str, str]

    @staticmethod
    def of(deployment: Any, iam: Any) -> TemplateRoles:
        names: dict[str, str] = {}
        for function in deployment.functions.values():
            names.update({k: v for k, v in function.environment.items() if k in NAMED_RESOURCES and v})
        policies = {
            source: RolePolicies.of_role(iam, function.role_arn)
            for source, function in deployment.functions.items()
        }
        return TemplateRoles(policies, names)

    def check(self, source: str, session_name: str, environment: Mapping[str, str]) -> RoleCheck:
        """The role of ``src/<source>/``, over the resources ``environment`` names."""
        policies = self.policies[source]
        renames = {stack: environment[v] for v, stack in self.names.items() if environment.get(v)}
        documents = []
        for document in policies.documents:
            text = document
            for stack_name, own_name in renames.items():
                text = text.replace(stack_name, own_name)
            documents.append(text)
        return RoleCheck(RolePolicies(policies.role_arn, tuple(documents)), session_name)
