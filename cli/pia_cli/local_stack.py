"""This repository's stack, deployed on the emulator, with its functions runnable in-process.

The demo, ``pia replay`` and the sample-event tests drive the same pipeline through this class:
publish a rule file the way a marketer does (upload, then the S3 notification to the poller), put
records on the stack's stream, let the local event source mapping feed the aggregator, run the
scheduled functions, and read back what the action targets received.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import boto3

from pia.targets.eventbridge import SOURCE
from pia_cli.calls import AwsCallCounter
from pia_cli.deploy import Deployment, deploy
from pia_cli.iam import RoleCheck, RolePolicies
from pia_cli.lambda_events import s3_object_created_event, schedule_event
from pia_cli.local_clients import ClientOverride
from pia_cli.local_lambda import LocalFunction
from pia_cli.recorder import PinpointRecorder, ProfilesRecorder
from pia_cli.request_checks import RequestCheck, check_first
from pia_cli.runner import KinesisMappingRunner, MappingSettings, RunnerStats, function_errors
from pia_cli.service_limits import ServiceLimits
from pia_cli.state_machine import Outcome, RunStats, StateMachine, StatesError, load_definition

REPOSITORY = Path(__file__).resolve().parents[2]
TEMPLATE = REPOSITORY / "template.yaml"
LOCAL_PINPOINT_APP = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
TOOLING = "local tooling"
MAX_PUT_RECORDS = 500
MAX_PUT_RECORDS_BYTES = 4 * 1024 * 1024
LOCAL_EVENT_BUS = "pia-local-actions"
LOCAL_PROFILES_DOMAIN = "pia-local-profiles"
EVALUATOR_STATE_MACHINE = "EvaluatorStateMachine"
STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"
LOCAL_STAND_INS = {"BACKFILL_QUERY_ENGINE": "duckdb"}
"""Settings that put a local engine where the emulator has no AWS one: moto cannot run Athena
queries, so a large backfill runs the same SQL on DuckDB over the archive's objects."""


@dataclass(frozen=True)
class EvaluatorRun:
    """One scheduled evaluator run: the path it took, what it returned, and (on the state machine)
    how the execution went."""

    path: str
    output: Any
    outcome: Outcome | None = None
    stats: RunStats | None = None


@dataclass
class TargetView:
    """What the action targets hold in the end: each user's attributes, and the events fired."""

    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    fired: Counter[tuple[str, str]] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalStack:
    """Use as a context manager: a function is wired on first use (a cold start) and every one is
    unwired on exit, so the handler modules are left as they were found.

    Each function acts under its execution role as CloudFormation created it: a call the role does
    not allow fails with AccessDenied, as it would in Lambda. So does the event source mapping's
    reading of the stream, which Lambda also does with the function's role."""

    def __init__(
        self,
        deployment: Deployment,
        *,
        clock: Callable[[], datetime] | None = None,
        log_stream: TextIO | None = None,
        log_level: str | None = None,
        counter: AwsCallCounter | None = None,
    ) -> None:
        self.deployment = deployment
        self.log_level = log_level
        self.clock = clock
        self.counter = counter or AwsCallCounter()
        self.log_stream = log_stream or sys.stderr
        self.pinpoint = PinpointRecorder(region=deployment.region)
        self.profiles = ProfilesRecorder(region=deployment.region)
        self._functions: dict[str, LocalFunction] = {}
        self._exit = ExitStack()
        self._eventbridge_queue: str | None = None
        region = deployment.region
        self.s3 = self.counter.watch(boto3.client("s3", region_name=region), TOOLING)
        self.kinesis = self.counter.watch(boto3.client("kinesis", region_name=region), TOOLING)
        self.sqs = self.counter.watch(boto3.client("sqs", region_name=region), TOOLING)
        self._iam = boto3.client("iam", region_name=region)

    @staticmethod
    def deploy(
        stack_name: str,
        parameters: Mapping[str, str],
        *,
        template: Path = TEMPLATE,
        region: str = "us-east-1",
        **options: Any,
    ) -> LocalStack:
        return LocalStack(deploy(template, stack_name, parameters, region=region), **options)

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()
        self._functions.clear()

    def now(self) -> datetime:
        return self.clock() if self.clock is not None else datetime.now(UTC)

    @property
    def overrides(self) -> dict[str, ClientOverride]:
        """Services the emulator lacks, answered in-process after botocore validated the request."""
        return {
            "pinpoint": lambda region: self.pinpoint.client(),
            "customer-profiles": lambda region: self.profiles.client(),
        }

    def role_check(self, source: str) -> RoleCheck:
        """The function's execution role, as deployed, checked on every call made under it."""
        deployed = self.deployment.function(source)
        return RoleCheck(RolePolicies.of_role(self._iam, deployed.role_arn), deployed.name)

    def checks(self, source: str) -> tuple[RequestCheck, ...]:
        return (self.role_check(source), ServiceLimits())

    def function(self, source: str) -> LocalFunction:
        """The deployed function ``src/<source>/``, wired to the emulator (cold on first use, then warm)."""
        if source not in self._functions:
            deployed = self.deployment.function(source)
            local = LocalFunction(
                source,
                environment={**deployed.environment, **LOCAL_STAND_INS},
                name=deployed.name,
                arn=deployed.arn,
                timeout=deployed.timeout,
                memory=deployed.memory,
                overrides=self.overrides,
                counter=self.counter,
                clock=self.clock,
                checks=self.checks(source),
                log_stream=self.log_stream,
                log_level=self.log_level,
            )
            self._functions[source] = self._exit.enter_context(local)
        return self._functions[source]

    def has_function(self, source: str) -> bool:
        return source in self.deployment.functions

    # ------------------------------------------------------------------ rules

    def upload_rules(self, path: Path, key_name: str | None = None) -> dict[str, Any]:
        """Upload a rule file under the poller's prefix; returns the S3 notification S3 would send."""
        environment = self.deployment.function("rule_poller").environment
        bucket, prefix = environment["RULES_BUCKET"], environment.get("RULES_PREFIX", "rules/")
        key = prefix + (key_name or path.name)
        body = path.read_bytes()
        response = self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return s3_object_created_event(
            bucket,
            key,
            size=len(body),
            etag=response.get("ETag", hashlib.md5(body, usedforsecurity=False).hexdigest()),
            version_id=response.get("VersionId"),
            time=self.now().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            region=self.deployment.region,
        )

    def publish_rules(self, path: Path) -> Any:
        """What happens when a marketer saves the file: upload, notification, poller run."""
        return self.function("rule_poller").invoke(self.upload_rules(path))

    def rules_report(self, path: Path) -> str | None:
        """The validation report the poller wrote next to the uploaded file, if any."""
        environment = self.deployment.function("rule_poller").environment
        bucket, prefix = environment["RULES_BUCKET"], environment.get("RULES_PREFIX", "rules/")
        stem = (prefix + path.name).rsplit(".", 1)[0]
        for suffix in (".report.csv", ".report.json"):
            try:
                body = self.s3.get_object(Bucket=bucket, Key=stem + suffix)["Body"].read()
            except self.s3.exceptions.NoSuchKey:
                continue
            return str(body.decode("utf-8-sig"))
        return None

    # ------------------------------------------------------------------ stream

    def stream_arn(self, source: str = "aggregator") -> str:
        return self.deployment.mapping_for(source).stream_arn

    def put_records(self, records: Iterable[tuple[bytes, str]], source: str = "aggregator") -> int:
        """PutRecords in order, 500 records (or 4 MB) a call; failed entries are put again, in order."""
        arn = self.stream_arn(source)
        batch: list[dict[str, Any]] = []
        size = count = 0
        for data, partition_key in records:
            if batch and (len(batch) == MAX_PUT_RECORDS or size + len(data) > MAX_PUT_RECORDS_BYTES):
                count += self._put(arn, batch)
                batch, size = [], 0
            batch.append({"Data": data, "PartitionKey": partition_key})
            size += len(data) + len(partition_key)
        if batch:
            count += self._put(arn, batch)
        return count

    def _put(self, arn: str, batch: list[dict[str, Any]]) -> int:
        pending = batch
        for _ in range(5):
            response = self.kinesis.put_records(StreamARN=arn, Records=pending)
            pending = [
                entry
                for entry, result in zip(pending, response["Records"], strict=True)
                if "ErrorCode" in result
            ]
            if not pending:
                return len(batch)
        raise RuntimeError(f"{len(pending)} records were refused by PutRecords five times")

    def mapping_runner(
        self,
        source: str = "aggregator",
        *,
        settings: MappingSettings | None = None,
        on_batch: Callable[[str, int, RunnerStats], None] | None = None,
    ) -> KinesisMappingRunner:
        """The local event source mapping for a function, attached (its starting position taken)."""
        function = self.function(source)
        kinesis = check_first(
            boto3.client("kinesis", region_name=self.deployment.region), [self.role_check(source)]
        )
        runner = KinesisMappingRunner(
            settings or self.deployment.mapping_for(source),
            function_errors(function.invoke),
            kinesis=self.counter.watch(kinesis, TOOLING),
            sqs=self.sqs,
            role_arn=self.deployment.function(source).role_arn,
            on_batch=on_batch,
        )
        runner.attach()
        return runner

    def failure_messages(self, source: str = "aggregator") -> list[dict[str, Any]]:
        """What the mapping's on-failure queue holds (read and deleted)."""
        destination = self.deployment.mapping_for(source).on_failure_destination
        if destination is None:
            return []
        parts = destination.split(":")
        url = self.sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        return self._drain_queue(url)

    def _drain_queue(self, url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            received = batch.get("Messages", [])
            if not received:
                return messages
            messages.extend(json.loads(m["Body"]) for m in received)
            self.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)],
            )

    # ------------------------------------------------------------------ schedules

    def has_state_machine(self, logical_id: str = EVALUATOR_STATE_MACHINE) -> bool:
        return logical_id in self.deployment.physical_ids(STATE_MACHINE_TYPE)

    def state_machine(self, logical_id: str = EVALUATOR_STATE_MACHINE) -> StateMachine:
        """The state machine as template.yaml defines it, interpreted locally: its tasks invoke the
        stack's functions and its Map reads and writes S3, all under the state machine's role."""
        arn = self.deployment.physical_ids(STATE_MACHINE_TYPE)[logical_id]
        role_name = self.deployment.physical_ids("AWS::IAM::Role")[f"{logical_id}Role"]
        role = RoleCheck(
            RolePolicies.of_role(self._iam, self._iam.get_role(RoleName=role_name)["Role"]["Arn"]),
            logical_id,
        )
        by_logical_id = {f.logical_id: f.arn for f in self.deployment.functions.values()}

        def resolve(value: Any) -> str:
            """A substitution's value: a function's ``!GetAtt X.Arn`` or a resource's ``!Ref``."""
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                target, attribute = value["Fn::GetAtt"]
                if attribute == "Arn" and target in by_logical_id:
                    return by_logical_id[target]
            if isinstance(value, dict) and value.get("Ref") in self.deployment.resources:
                return self.deployment.resources[value["Ref"]][1]
            if isinstance(value, str):
                return value
            raise StatesError(
                "States.Runtime", f"{logical_id}: cannot resolve substitution {value!r} locally"
            )

        by_arn = {f.arn: f.source for f in self.deployment.functions.values()}

        def invoke(function_arn: str, payload: Any) -> Any:
            if not role.policies.allows("lambda:InvokeFunction", function_arn):
                raise StatesError(
                    "Lambda.AWSLambdaException", f"{logical_id}'s role may not invoke {function_arn}"
                )
            if function_arn not in by_arn:
                raise StatesError("Lambda.ResourceNotFoundException", f"no function {function_arn}")
            try:
                return self.function(by_arn[function_arn]).invoke(payload)
            except Exception as exc:
                message = json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
                raise StatesError(type(exc).__name__, message) from exc

        s3 = check_first(boto3.client("s3", region_name=self.deployment.region), [role, ServiceLimits()])
        return StateMachine(
            load_definition(TEMPLATE, logical_id, resolve),
            arn=arn,
            invoke=invoke,
            s3=self.counter.watch(s3, f"{self.deployment.stack_name}-states"),
        )

    def run_evaluator(self) -> EvaluatorRun:
        """The evaluator's schedule: it starts the state machine (EvaluatorPath step-functions) or
        invokes the function (single-invocation)."""
        if not self.has_state_machine():
            return EvaluatorRun("single-invocation", self._invoke_scheduled("evaluator"))
        machine = self.state_machine()
        now = self.now()
        name = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        outcome = machine.start(name, {}, now)
        output = outcome.output if outcome.status == "SUCCEEDED" else vars(outcome)
        return EvaluatorRun("step-functions", output, outcome, machine.stats)

    def run_scheduled(self, source: str) -> Any:
        """What a function's schedule does, at the stack's clock: the evaluator's may run the state
        machine instead; every other invokes the function with the schedule rule's event."""
        if source == "evaluator":
            return self.run_evaluator().output
        return self._invoke_scheduled(source)

    def _invoke_scheduled(self, source: str) -> Any:
        deployed = self.deployment.function(source)
        rules = self.deployment.physical_ids("AWS::Events::Rule")
        rule = next((pid for lid, pid in rules.items() if lid.startswith(deployed.logical_id)), deployed.name)
        arn = f"arn:aws:events:{self.deployment.region}:{deployed.arn.split(':')[4]}:rule/{rule}"
        return self.function(source).invoke(
            schedule_event(arn, _iso(self.now()), region=self.deployment.region)
        )

    # ------------------------------------------------------------------ targets

    def capture_eventbridge(self) -> None:
        """Forward the engine's events on its bus to a queue, as a consumer would (call before running).

        Deploy with ``EventBusName`` set to a bus of its own (:data:`LOCAL_EVENT_BUS`): moto treats
        the stack's schedule rules, which have no event pattern, as matching every event on the
        default bus, and fails the PutEvents trying to deliver to their Lambda targets."""
        bus = self.deployment.function("aggregator").environment.get("EVENT_BUS_NAME", "default")
        events = self.counter.watch(boto3.client("events", region_name=self.deployment.region), TOOLING)
        if bus != "default":
            events.create_event_bus(Name=bus)
        url = self.sqs.create_queue(QueueName=f"{self.deployment.stack_name}-eventbridge-capture")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(
            Name=f"{self.deployment.stack_name}-capture",
            EventBusName=bus,
            EventPattern=json.dumps({"source": [SOURCE]}),
        )
        events.put_targets(
            Rule=f"{self.deployment.stack_name}-capture",
            EventBusName=bus,
            Targets=[{"Id": "capture", "Arn": arn}],
        )
        self._eventbridge_queue = url

    def targets_view(self) -> TargetView:
        """Attributes and fired events as the targets saw them: the EventBridge capture when it is set
        up (it names every user, with or without a Pinpoint endpoint), else the Pinpoint recorder."""
        view = TargetView()
        for operation, count in self.pinpoint.calls.items():
            view.received[f"pinpoint {operation}"] += count
        for operation, count in self.profiles.calls.items():
            view.received[f"customer-profiles {operation}"] += count
        if self._eventbridge_queue is None and not self.pinpoint.calls and self.profiles.calls:
            view.attributes = self.profiles.user_attributes()
            return view
        if self._eventbridge_queue is None:
            view.attributes = {user: dict(values) for user, values in self.pinpoint.user_attributes.items()}
            view.fired = self.pinpoint.fired()
            return view
        for event in self._drain_queue(self._eventbridge_queue):
            detail = event.get("detail", {})
            kind = event.get("detail-type", "")
            view.received[f"eventbridge {kind}"] += 1
            if kind == "Reset Event Fired":
                view.fired[(detail["user_id"], detail["output_name"])] += 1
            else:
                view.attributes.setdefault(detail["user_id"], {})[detail["output_name"]] = detail["value"]
        return view
