"""Deploy this repository's template.yaml to the local emulator, the way ``sam deploy`` would.

The steps mirror SAM's: package the code (zip each CodeUri/ContentUri into an artifacts bucket),
expand the ``AWS::Serverless`` transform with aws-sam-translator (the library SAM itself uses), then
create the stack with CloudFormation. moto's CloudFormation cannot create every resource type, and
some it can create would misbehave locally, so the expanded template is trimmed first; every
trimmed resource is reported with the reason:

- types moto has no model for (Pinpoint, EventBridge Scheduler, CloudWatch alarms, queue and bucket
  policies, ...) are dropped, with anything that references them;
- the Kinesis event source mapping is dropped: moto's mapping would invoke the function in Docker
  on every PutRecord. Its settings are read from the template instead, resolved by CloudFormation
  itself (they ride along as stack outputs), and drive the local runner;
- S3 notifications to Lambda are dropped for the same reason; the caller invokes the poller with
  the S3 event S3 would have sent;
- layers from outside the template (the AWS SDK for pandas layer) are detached: handlers run
  in-process on the local virtualenv, which already has their packages.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import re
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
from moto.cloudformation import parsing
from moto.cloudformation.parsing import NULL_MODELS, get_model_map
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from pia_cli.runner import MappingSettings

ESM_TYPE = "AWS::Lambda::EventSourceMapping"
FUNCTION_TYPE = "AWS::Lambda::Function"
ARTIFACT_PREFIX = "pia-local-artifacts"
OUTPUT_PREFIX = "PiaLocal"
_ESM_FIELDS = (
    "EventSourceArn",
    "FunctionName",
    "BatchSize",
    "StartingPosition",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "ParallelizationFactor",
    "MaximumBatchingWindowInSeconds",
    "Enabled",
    "TumblingWindowInSeconds",
)
_SKIPPED_TYPES = {
    "AWS::CloudWatch::Alarm": "moto's CloudFormation has no CloudWatch alarms",
    "AWS::CloudWatch::Dashboard": "a dashboard has nothing to show locally",
    "AWS::Pinpoint::EventStream": "moto has no Pinpoint; the demo puts events on the stream itself",
    "AWS::Scheduler::Schedule": "moto has no EventBridge Scheduler; local runs invoke scheduled functions",
    "AWS::Glue::Database": "moto cannot run Athena queries; local backfills run the same SQL on DuckDB",
    "AWS::Glue::Table": "moto cannot run Athena queries; local backfills run the same SQL on DuckDB",
    "AWS::Athena::WorkGroup": "moto cannot run Athena queries; local backfills run the same SQL on DuckDB",
}


class DeployError(RuntimeError):
    """The template could not be expanded or the stack could not be created."""


class StubManagedPolicyLoader:
    """SAM looks up AWS managed policy ARNs in IAM only for names missing from its bundled list;
    locally there is no IAM to ask, so unknown names stay unresolved rather than calling AWS."""

    def load(self) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class DeployedFunction:
    logical_id: str
    name: str
    arn: str
    source: str
    handler: str
    timeout: int
    memory: int
    environment: Mapping[str, str]
    role_arn: str


@dataclass(frozen=True)
class Deployment:
    stack_name: str
    region: str
    outputs: Mapping[str, str]
    resources: Mapping[str, tuple[str, str]]
    functions: Mapping[str, DeployedFunction]
    mappings: tuple[MappingSettings, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)

    def physical_ids(self, resource_type: str) -> dict[str, str]:
        return {lid: pid for lid, (rtype, pid) in self.resources.items() if rtype == resource_type}

    def function(self, source: str) -> DeployedFunction:
        """The function whose CodeUri is ``src/<source>/``."""
        if source not in self.functions:
            raise DeployError(f"the template has no function with CodeUri src/{source}/")
        return self.functions[source]

    def mapping_for(self, source: str) -> MappingSettings:
        arn = self.function(source).arn
        for mapping in self.mappings:
            if mapping.function_arn == arn:
                return mapping
        raise DeployError(f"the template has no event source mapping for src/{source}/")


def load_template(path: Path) -> dict[str, Any]:
    document = yaml_parse(path.read_text())
    if not isinstance(document, dict) or "Resources" not in document:
        raise DeployError(f"{path} is not a CloudFormation template")
    return document


def _code_dirs(template: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(properties, key, logical id) of every local CodeUri/ContentUri, Globals included."""
    for logical_id, resource in template.get("Resources", {}).items():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                yield props, key, logical_id
    function_globals = template.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str) and not function_globals["CodeUri"].startswith(
        "s3://"
    ):
        yield function_globals, "CodeUri", "Globals"


def _zip_directory(directory: Path, layer: bool) -> bytes:
    """A zip of the sources, as ``sam build`` lays them out (a layer's Python code under python/)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                name = path.relative_to(directory).as_posix()
                archive.write(path, f"python/{name}" if layer else name)
    return buffer.getvalue()


def package(template: dict[str, Any], root: Path, s3: Any, bucket: str) -> dict[str, str]:
    """``sam package``: upload each local code directory and point the template at it.

    Returns logical id -> the source directory's name (``src/aggregator/`` -> ``aggregator``).
    """
    sources: dict[str, str] = {}
    for props, key, logical_id in list(_code_dirs(template)):
        directory = (root / props[key]).resolve()
        if not directory.is_dir():
            raise DeployError(f"{logical_id}: {key} {props[key]!r} is not a directory under {root}")
        object_key = f"{logical_id}.zip"
        s3.put_object(Bucket=bucket, Key=object_key, Body=_zip_directory(directory, key == "ContentUri"))
        sources[logical_id] = directory.name
        props[key] = f"s3://{bucket}/{object_key}"
    return sources


def expand(template: dict[str, Any], parameters: Mapping[str, str], region: str) -> dict[str, Any]:
    # The translator warns on every run that its own usage metrics were never published.
    logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        expanded: dict[str, Any] = translator.translate(
            copy.deepcopy(template),
            parameter_values=dict(parameters),
            get_managed_policy_map=StubManagedPolicyLoader().load,
        )
    except Exception as exc:
        raise DeployError(f"the SAM transform failed: {exc}") from exc
    return expanded


def _references(node: Any) -> set[str]:
    """Logical ids a node refers to (Ref, GetAtt, Sub, DependsOn)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".", 1)[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                if isinstance(text, str):
                    found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def _supported_types() -> set[str]:
    return set(get_model_map()) | set(NULL_MODELS)


def trim_for_emulator(expanded: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """Remove what moto cannot (or should not) create; returns (template, skipped, mapping properties)."""
    template = copy.deepcopy(expanded)
    resources: dict[str, Any] = template["Resources"]
    supported = _supported_types()
    skipped: dict[str, str] = {}
    mappings: dict[str, Any] = {}
    for logical_id, resource in list(resources.items()):
        rtype = resource.get("Type", "")
        if rtype == ESM_TYPE:
            mappings[logical_id] = resource
            skipped[logical_id] = (
                "moto's mapping would invoke the function in Docker; the local runner reads the stream"
            )
        elif rtype in _SKIPPED_TYPES:
            skipped[logical_id] = _SKIPPED_TYPES[rtype]
        elif rtype not in supported and not rtype.startswith("Custom::"):
            skipped[logical_id] = f"moto's CloudFormation cannot create {rtype}"
    for logical_id in skipped:
        resources.pop(logical_id)
    changed = True
    while changed:
        changed = False
        for logical_id, resource in list(resources.items()):
            depends = resource.get("DependsOn", [])
            depends = [depends] if isinstance(depends, str) else depends
            gone = (_references(resource.get("Properties", {})) | set(depends)) & set(skipped)
            if gone:
                skipped[logical_id] = f"refers to {', '.join(sorted(gone))}, which was not created"
                resources.pop(logical_id)
                changed = True
    layers = {lid for lid, r in resources.items() if r.get("Type") == "AWS::Lambda::LayerVersion"}
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource.get("Type") == FUNCTION_TYPE and props.get("Layers"):
            kept = [layer for layer in props["Layers"] if _references(layer) and _references(layer) <= layers]
            if len(kept) != len(props["Layers"]):
                skipped[f"{logical_id}.Layers"] = (
                    "layers from outside the template: the local virtualenv provides them"
                )
                props["Layers"] = kept
        if resource.get("Type") == "AWS::S3::Bucket":
            notifications = props.get("NotificationConfiguration", {})
            if notifications.pop("LambdaConfigurations", None) is not None:
                skipped[f"{logical_id}.NotificationConfiguration"] = (
                    "S3 would invoke the function in Docker; the caller sends the S3 event itself"
                )
            if not notifications:
                props.pop("NotificationConfiguration", None)
    outputs: dict[str, Any] = template.setdefault("Outputs", {})
    for name, output in list(outputs.items()):
        gone = _references(output.get("Value")) & set(skipped)
        if gone:
            outputs.pop(name)
    for index, (logical_id, resource) in enumerate(sorted(mappings.items())):
        props = resource.get("Properties", {})
        condition = resource.get("Condition")
        fields = {key: props[key] for key in _ESM_FIELDS if key in props}
        destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination is not None:
            fields["OnFailure"] = destination
        for key, value in fields.items():
            entry: dict[str, Any] = {"Value": value if isinstance(value, dict) else str(value)}
            if condition:
                entry["Condition"] = condition
            outputs[f"{OUTPUT_PREFIX}Esm{index}{key}"] = entry
        outputs[f"{OUTPUT_PREFIX}Esm{index}Id"] = {
            "Value": logical_id,
            **({"Condition": condition} if condition else {}),
        }
        mappings[logical_id] = {"FunctionResponseTypes": props.get("FunctionResponseTypes", [])}
    return template, skipped, mappings


@contextmanager
def _no_value_removes_list_items() -> Iterator[None]:
    """CloudFormation drops a list element that resolves to ``AWS::NoValue``; moto keeps it as null,
    which breaks the ``!If [cond, statement, !Ref AWS::NoValue]`` policy statements. The server runs
    in this process, so its resolver is corrected for the duration of the stack creation."""
    original = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, list):
            cleaned = [clean_json(item, resources_map) for item in resource_json]
            return [item for item in cleaned if item is not None]
        return original(resource_json, resources_map)

    parsing.clean_json = clean_json
    try:
        yield
    finally:
        parsing.clean_json = original


def _mapping_settings(
    outputs: Mapping[str, str], response_types: Mapping[str, Any]
) -> tuple[dict[str, str], tuple[MappingSettings, ...]]:
    plain = {k: v for k, v in outputs.items() if not k.startswith(OUTPUT_PREFIX)}
    found: list[MappingSettings] = []
    index = 0
    while f"{OUTPUT_PREFIX}Esm{index}Id" in outputs or any(
        k.startswith(f"{OUTPUT_PREFIX}Esm{index}") for k in outputs
    ):
        prefix = f"{OUTPUT_PREFIX}Esm{index}"
        values = {k[len(prefix) :]: v for k, v in outputs.items() if k.startswith(prefix)}
        index += 1
        if "EventSourceArn" not in values or ":kinesis:" not in values["EventSourceArn"]:
            continue
        found.append(
            MappingSettings(
                stream_arn=values["EventSourceArn"],
                function_arn=values.get("FunctionName", ""),
                batch_size=int(values.get("BatchSize", "100")),
                starting_position=values.get("StartingPosition", "LATEST"),
                maximum_retry_attempts=int(values.get("MaximumRetryAttempts", "-1")),
                maximum_record_age_seconds=int(values.get("MaximumRecordAgeInSeconds", "-1")),
                bisect_on_function_error=values.get("BisectBatchOnFunctionError", "false").lower() == "true",
                parallelization_factor=int(values.get("ParallelizationFactor", "1")),
                batching_window_seconds=int(values.get("MaximumBatchingWindowInSeconds", "0")),
                report_batch_item_failures="ReportBatchItemFailures"
                in response_types.get(values.get("Id", ""), {}).get("FunctionResponseTypes", []),
                on_failure_destination=values.get("OnFailure"),
                enabled=values.get("Enabled", "true").lower() != "false",
            )
        )
    return plain, tuple(found)


def deploy(
    template_path: Path,
    stack_name: str,
    parameters: Mapping[str, str] | None = None,
    region: str = "us-east-1",
) -> Deployment:
    """Package, transform, trim and create the stack; the AWS clients follow ``AWS_ENDPOINT_URL``."""
    root = template_path.resolve().parent
    params = dict(parameters or {})
    template = load_template(template_path)
    declared = template.get("Parameters", {})
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise DeployError(f"{template_path.name} has no parameter {', '.join(unknown)}")
    s3 = boto3.client("s3", region_name=region)
    artifacts = f"{ARTIFACT_PREFIX}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=artifacts, **_location(region))
    sources = package(template, root, s3, artifacts)
    expanded = expand(template, params, region)
    trimmed, skipped, response_types = trim_for_emulator(expanded)
    cloudformation = boto3.client("cloudformation", region_name=region)
    try:
        with _no_value_removes_list_items():
            cloudformation.create_stack(
                StackName=stack_name,
                TemplateBody=json.dumps(trimmed),
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
            )
    except Exception as exc:
        raise DeployError(f"creating stack {stack_name} failed: {exc}") from exc
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise DeployError(
            f"stack {stack_name} is {stack['StackStatus']}: {stack.get('StackStatusReason', '')}"
        )
    outputs = {o["OutputKey"]: str(o["OutputValue"]) for o in stack.get("Outputs", [])}
    resources: dict[str, tuple[str, str]] = {}
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            if not summary.get("LogicalResourceId"):
                continue
            resources[summary["LogicalResourceId"]] = (
                summary["ResourceType"],
                summary.get("PhysicalResourceId", ""),
            )
    functions = _functions(resources, sources, region)
    plain_outputs, mappings = _mapping_settings(outputs, response_types)
    arns = {f.name: f.arn for f in functions.values()}
    mappings = tuple(replace(m, function_arn=arns.get(m.function_arn, m.function_arn)) for m in mappings)
    return Deployment(
        stack_name=stack_name,
        region=region,
        outputs=plain_outputs,
        resources=resources,
        functions=functions,
        mappings=mappings,
        skipped=skipped,
    )


def _location(region: str) -> dict[str, Any]:
    return {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}


def _functions(
    resources: Mapping[str, tuple[str, str]], sources: Mapping[str, str], region: str
) -> dict[str, DeployedFunction]:
    lambda_client = boto3.client("lambda", region_name=region)
    functions: dict[str, DeployedFunction] = {}
    for logical_id, (rtype, physical_id) in resources.items():
        if rtype != FUNCTION_TYPE or logical_id not in sources:
            continue
        config = lambda_client.get_function_configuration(FunctionName=physical_id)
        functions[sources[logical_id]] = DeployedFunction(
            logical_id=logical_id,
            name=config["FunctionName"],
            arn=config["FunctionArn"],
            source=sources[logical_id],
            handler=config.get("Handler", "app.lambda_handler"),
            timeout=int(config.get("Timeout", 3)),
            memory=int(config.get("MemorySize", 128)),
            environment={k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()},
            role_arn=config.get("Role", ""),
        )
    return functions
