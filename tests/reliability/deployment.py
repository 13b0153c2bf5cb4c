"""One isolated copy of the stack on moto, with its Lambda containers, faults and a way to check it.

Each scenario run gets fresh tables, a fresh stream and a fresh Pinpoint recorder, so runs never
see each other's state. The aggregator and relay are the real handler modules; what is replaced is
what Lambda itself provides:

- a *container*: a handler's runtime (caches and adapters) is built once per container; a crashed
  container is gone, and the next invocation starts cold, as in Lambda. Two containers can be alive
  at once (two shards), each with its own counter cache;
- the clock of the relay, which runs "later" each time so claim leases have expired;
- sleeping: backoff waits are skipped;
- the execution role: each function's clients act under its role from template.yaml, and AWS's
  request limits are enforced on them (``pia_cli.local_clients``).

``compare`` checks the deployment against the sequential model: every counter, every Pinpoint
attribute and event, and an empty outbox.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3

from pia.aws.clients import AwsClients, ClientFactory
from pia.aws.wiring import Clock, Wiring, system_clock
from pia.core.actions import action_id_for
from pia.counting.counters import CounterState
from pia.counting.store import counter_from_item, still_owed
from pia.rules.ruleset import Ruleset, RulesetTable
from pia.rules.table import parse_rules
from pia_cli.emulator import create_table
from pia_cli.iam import TemplateRoles
from pia_cli.lambda_events import StreamRecord, kinesis_event, record_data
from pia_cli.partiql_batches import parse_write
from pia_cli.recorder import PinpointRecorder
from pia_cli.request_checks import RequestCheck, check_first
from pia_cli.runner import FunctionError, KinesisMappingRunner, MappingSettings
from pia_cli.service_limits import ServiceLimits
from tests.reliability.faults import (
    AttributeSends,
    CommitLog,
    Crash,
    LandThenTimeout,
    ProcessKilled,
    Throttle,
)
from tests.reliability.reference import ReferenceModel, RuleSpec, StreamEvent

REGION = "us-east-1"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Produced:
    """A record as the stream holds it: its lane (the shard, or ``shard/partition-key`` when the
    mapping's ParallelizationFactor is above 1), its sequence number, and the event the app sent."""

    lane: str
    sequence: int
    event: StreamEvent

    def stream_record(self) -> StreamRecord:
        shard, _, key = self.lane.partition("/")
        return StreamRecord(
            record_data(self.event.document()),
            str(self.sequence),
            partition_key=key or self.event.user or "anonymous",
            shard_id=shard,
        )


@dataclass(frozen=True)
class Comparison:
    differences: list[str]
    resends: int


class Deployment:
    def __init__(
        self,
        *,
        aggregator: ModuleType,
        relay: ModuleType,
        context: Any,
        rng: random.Random,
        environment: Mapping[str, str] | None = None,
        roles: TemplateRoles | None = None,
    ) -> None:
        suffix = next(_numbers)
        self.aggregates = f"rel-aggregates-{suffix}"
        self.rulesets = f"rel-rulesets-{suffix}"
        self.timeseries = f"rel-timeseries-{suffix}"
        self.stream_name = f"rel-events-{suffix}"
        self.environment = {
            "AGGREGATES_TABLE": self.aggregates,
            "RULESET_TABLE": self.rulesets,
            "TIMESERIES_TABLE": self.timeseries,
            "RULESET_TTL_SECONDS": "0",
            "OUTBOX_MIN_AGE_SECONDS": "0",
            **(environment or {}),
        }
        self.app = aggregator
        self.relay_app = relay
        self.roles = roles
        self.context = context
        self.rng = rng
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        for name, ttl in ((self.aggregates, False), (self.rulesets, False), (self.timeseries, True)):
            create_table(self.dynamodb, name, ttl=ttl)
        self.recorder = PinpointRecorder()
        self.pinpoint_refused = 0
        self.pinpoint_refusal_rate = 0.0
        self.crash = Crash(outbox=self.outbox_actions)
        self.attribute_sends = AttributeSends()
        self.throttle = Throttle(random.Random(rng.random()))
        self.timeout = LandThenTimeout(random.Random(rng.random()), self._write_is_stored)
        self.commits = CommitLog()
        self.extra_hooks: list[tuple[str, Callable[..., Any]]] = []
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        self.current: Any = None
        self.relay_clock = datetime.now(UTC)
        self.relay_runtime: Any = None
        self.rule_ids: dict[str, str] = {}
        self.live: tuple[RuleSpec, ...] = ()
        self.kinesis: Any = None
        self.closed = False

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Lambda containers ---------------------------------------------------------------------

    def _env(self) -> AbstractContextManager[None]:
        return _environment(self.environment)

    def clients(self, function: str, environment: Mapping[str, str] | None = None) -> ClientFactory:
        """The clients every container of ``src/<function>/`` gets, faults attached. One per service
        and region, shared by that function's containers: a container's state is its caches, not
        its HTTP clients, and building a botocore client costs more than most invocations here."""

        def client(service: str, region_name: str | None = None) -> Any:
            key = (function, service, region_name)
            if key not in self._clients:
                made = self._new_client(service, region_name)
                self._clients[key] = check_first(made, self.checks(function, environment))
            return self._clients[key]

        return client

    def checks(self, function: str, environment: Mapping[str, str] | None = None) -> list[RequestCheck]:
        """The function's role (when the template's roles are known), over the resources its
        environment names, and AWS's request limits."""
        checks: list[RequestCheck] = [ServiceLimits()]
        if self.roles is not None:
            names = environment if environment is not None else self.environment
            checks.insert(0, self.roles.check(function, f"rel-{function}", names))
        return checks

    def wiring(self, function: str, clock: Clock = system_clock) -> Wiring:
        return Wiring(self.clients(function), clock)

    def _new_client(self, service: str, region_name: str | None) -> Any:
        if service == "pinpoint":
            client = self.recorder.client()
        else:
            client = AwsClients()(service, region_name=region_name or REGION)
        self.crash.attach(client)
        if service == "pinpoint":
            self.attribute_sends.attach(client)
        if service == "dynamodb":
            self.throttle.attach(client)
            self.timeout.attach(client)
            self.commits.attach(client)
            client.meta.events.register_first("before-call.dynamodb.*", self._extra_hooks)
        return client

    def _extra_hooks(self, **kwargs: Any) -> Any:
        for event, hook in self.extra_hooks:
            if kwargs["event_name"].startswith(event):
                answer = hook(**kwargs)
                if answer is not None:
                    return answer
        return None

    def new_container(self) -> Any:
        """A cold start: an empty counter cache, the ruleset read afresh."""
        with self._env(), self.app.container.wired(self.wiring("aggregator")) as container:
            runtime = container.build()
        _no_backoff(runtime.aggregator._store, *runtime.aggregator._targets)
        return runtime

    def invoke(self, event: dict[str, Any], container: Any = None) -> dict[str, Any]:
        """One Lambda invocation. A crash kills the container it ran in."""
        if container is None:
            if self.current is None:
                self.current = self.new_container()
            container = self.current
        try:
            with self._env(), self.app.container.running(container):
                response: dict[str, Any] = self.app.lambda_handler(event, self.context)
        except ProcessKilled:
            if self.current is container:
                self.current = None
            raise
        return response

    def invoker(self, before: Callable[[], None] = lambda: None) -> Callable[[dict[str, Any]], Any]:
        """What the event source mapping calls: a crash or an exception is a function error."""

        def invoke(event: dict[str, Any]) -> Any:
            before()
            try:
                return self.invoke(event)
            except (ProcessKilled, Exception) as exc:
                raise FunctionError(str(exc)) from exc

        return invoke

    def batch(self, produced: Sequence[Produced]) -> dict[str, Any]:
        return kinesis_event([p.stream_record() for p in produced], stream_name=self.stream_name)

    # -- the stream and its event source mapping -------------------------------------------------

    def create_stream(self, shards: int = 1) -> None:
        self.kinesis = boto3.client("kinesis", region_name=REGION)
        self.kinesis.create_stream(StreamName=self.stream_name, ShardCount=shards)
        self.stream_arn = self.kinesis.describe_stream(StreamName=self.stream_name)["StreamDescription"][
            "StreamARN"
        ]

    def produce(
        self, events: Sequence[StreamEvent], shard_of: Callable[[StreamEvent], int] = lambda e: 0
    ) -> list[Produced]:
        """PutRecords, 500 at a time; each event goes to the shard ``shard_of`` names."""
        shards = self.kinesis.list_shards(StreamARN=self.stream_arn)["Shards"]
        produced: list[Produced] = []
        for start in range(0, len(events), 500):
            chunk = events[start : start + 500]
            answer = self.kinesis.put_records(
                StreamARN=self.stream_arn,
                Records=[
                    {
                        "Data": record_data(event.document()),
                        "PartitionKey": event.user or "anonymous",
                        "ExplicitHashKey": shards[shard_of(event) % len(shards)]["HashKeyRange"][
                            "StartingHashKey"
                        ],
                    }
                    for event in chunk
                ],
            )
            assert not answer.get("FailedRecordCount"), answer
            for event, result in zip(chunk, answer["Records"], strict=True):
                produced.append(Produced(result["ShardId"], int(result["SequenceNumber"]), event))
        return produced

    def mapping(self, invoke: Callable[[dict[str, Any]], Any], batch_size: int = 10) -> KinesisMappingRunner:
        """The template's mapping, except that retries are unbounded: a record given up on is lost
        by design (it goes to the on-failure queue), and these scenarios check nothing is lost."""
        settings = MappingSettings(
            stream_arn=self.stream_arn,
            batch_size=batch_size,
            starting_position="TRIM_HORIZON",
            maximum_retry_attempts=-1,
            bisect_on_function_error=True,
            report_batch_item_failures=True,
        )
        return KinesisMappingRunner(settings, invoke, kinesis=self.kinesis)

    # -- rules, relay --------------------------------------------------------------------------

    def publish(self, specs: Sequence[RuleSpec], extra_rows: Sequence[Mapping[str, str]] = ()) -> None:
        """``extra_rows`` are rows the model does not check (a date rule, to exercise the rollups)."""
        rows = [*(s.row() for s in specs), *(dict(row) for row in extra_rows)]
        parsed = parse_rules(enumerate(rows, start=2))
        assert not parsed.errors, parsed.errors
        by_output = {r.output_name: r.rule_id for r in parsed.rules}
        self.rule_ids.update(by_output)
        table = RulesetTable(self.dynamodb, self.rulesets)
        current = table.current()
        table.publish(
            Ruleset(
                version=current.version + 1, rules=parsed.rules, published_at=datetime.now(UTC).isoformat()
            ),
            expected_version=current.version,
        )
        self.live = tuple(specs)

    def refuse_pinpoint(self, rate: float) -> None:
        """Pinpoint answers TooManyRequestsException to this share of calls (seeded)."""
        self.pinpoint_refusal_rate = rate
        rng = random.Random(self.rng.random())

        def refuse(_operation: str) -> bool:
            if rng.random() < self.pinpoint_refusal_rate:
                self.pinpoint_refused += 1
                return True
            return False

        self.recorder.fail_next = 10**9
        self.recorder.failure_code = "TooManyRequestsException"
        self.recorder.failure_filter = refuse

    def run_relay(self) -> dict[str, Any]:
        """The scheduled relay, ten minutes after its previous run (leases have expired). Its
        container stays warm between runs until one is killed. A run that raises is a failed
        scheduled invocation: EventBridge Scheduler simply runs the next one."""
        self.relay_clock += timedelta(minutes=10)
        with (
            self._env(),
            self.relay_app.container.wired(self.wiring("action_relay", self._relay_now)) as container,
        ):
            if self.relay_runtime is None:
                self.relay_runtime = container.build()
                _no_backoff(*self.relay_runtime.tables, *self.relay_runtime.targets)
            with container.running(self.relay_runtime):
                try:
                    result: dict[str, Any] = self.relay_app.lambda_handler({}, self.context)
                except (ProcessKilled, Exception) as exc:
                    if isinstance(exc, ProcessKilled):
                        self.relay_runtime = None
                    return {"pending": None, "delivered": 0, "error": f"{type(exc).__name__}: {exc}"}
        return result

    def _relay_now(self) -> datetime:
        return self.relay_clock

    def drain_outbox(self, attempts: int = 20) -> int:
        """Runs the relay until a run finds nothing pending; returns how many actions it delivered."""
        delivered = 0
        for _ in range(attempts):
            result = self.run_relay()
            delivered += result["delivered"]
            if result["pending"] == 0 and not self.outbox():
                break
        return delivered

    # -- what the deployment holds -------------------------------------------------------------

    def _items(self, table: str | None = None) -> list[dict[str, Any]]:
        """A whole table, the aggregates table by default (a test reads everything; the engine never
        scans)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table or self.aggregates, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _owed(self, items: list[dict[str, Any]] | None = None) -> list[tuple[dict[str, Any], str]]:
        """(action, target) still owed by a counter or a rollup, or parked."""
        found = items if items is not None else self._items()
        owed: list[tuple[dict[str, Any], str]] = [(p.action.to_json(), p.target) for p in still_owed(found)]
        rollups = self._items(self.timeseries)
        for item in rollups:
            for raw in item.get("ob", {}).get("L", []):
                entry = json.loads(raw["S"])
                owed.append((entry["a"], entry["t"]))
        for item in found + rollups:
            if item["pk"]["S"] == "PARKED":
                owed.append((json.loads(item["a"]["S"]), item["tg"]["S"]))
        return owed

    def outbox_actions(self) -> list[dict[str, Any]]:
        return [action for action, _ in self._owed()]

    def outbox(self, items: list[dict[str, Any]] | None = None) -> list[str]:
        return [f"{action['action_id']}#{target}" for action, target in self._owed(items)]

    def counters(self, items: list[dict[str, Any]] | None = None) -> dict[tuple[str, str], CounterState]:
        outputs = {rule_id: output for output, rule_id in self.rule_ids.items()}
        found: dict[tuple[str, str], CounterState] = {}
        for item in items if items is not None else self._items():
            if item["pk"]["S"].startswith("R#"):
                state = counter_from_item(item)
                found[(outputs.get(state.rule_id, state.rule_id), state.user_id)] = state
        return found

    def fired_events(self) -> Counter[str]:
        """PutEvents entries Pinpoint accepted, by event id (the action id)."""
        return Counter(e.event_id for e in self.recorder.events)

    def compare(self, reference: ReferenceModel, specs: Iterable[RuleSpec]) -> Comparison:
        """Every way the deployment differs from the reference, in words (none when exact), and how
        many same-id resends the documented crash window explains."""
        by_output = {s.output: s for s in specs}
        found: list[str] = []
        items = self._items()
        actual = {k: v for k, v in self.counters(items).items() if k[0] in by_output}
        expected = {k: v for k, v in reference.tallies.items() if k[0] in by_output}
        for key in sorted(set(actual) | set(expected)):
            state, tally = actual.get(key), expected.get(key)
            if state is None or tally is None:
                found.append(
                    f"counter {key}: engine has {state and (state.count, state.total)}, expected {tally}"
                )
                continue
            got = (state.count, state.total, state.ready, state.fired, state.capped)
            want = (tally.count, tally.total, tally.ready, tally.fired, tally.capped)
            if got != want:
                found.append(f"counter {key}: (count, sum, ready, fired, capped) is {got}, expected {want}")
        attributes = self.recorder.user_attributes
        wanted: Counter[str] = Counter()
        for (output, user), tally in expected.items():
            if by_output[output].reset:
                wanted.update(
                    action_id_for(self.rule_ids[output], user, lane, seq) for lane, seq in tally.crossings
                )
            elif tally.ready and attributes.get(user, {}).get(output) != "ready":
                found.append(f"attribute {output} of {user}: not set to ready in Pinpoint")
        for output, spec in by_output.items():
            for user, values in attributes.items():
                tally = expected.get((output, user))
                if not spec.reset and output in values and (tally is None or not tally.ready):
                    found.append(f"attribute {output} of {user}: set in Pinpoint, but the rule was never met")
        delivered = self.fired_events()
        ours = {e.event_id for e in self.recorder.events if e.event_type in by_output}
        resends = 0
        for action_id in sorted(set(wanted) | ours):
            sent, due = delivered[action_id], wanted[action_id]
            if due and due < sent <= due + self.crash.window[action_id]:
                resends += sent - due
            elif sent != due:
                found.append(f"event {action_id}: delivered {sent} times, expected {due}")
        pending = self.outbox(items)
        if pending:
            found.append(f"{len(pending)} outbox entries never delivered: {pending[:3]}")
        return Comparison(found, resends)

    def _write_is_stored(self, operation: str, body: dict[str, Any]) -> bool:
        """The proof behind LandThenTimeout: read the table with a client no fault touches."""
        if operation == "PutItem":
            key = {"pk": body["Item"]["pk"], "sk": body["Item"]["sk"]}
            item = self.dynamodb.get_item(TableName=body["TableName"], Key=key, ConsistentRead=True).get(
                "Item"
            )
            return item is not None and item == body["Item"]
        if operation == "BatchExecuteStatement":
            first = body["Statements"][0]
            write = parse_write(first["Statement"], first.get("Parameters", []))
            source = write.values if write.kind == "insert" else (write.where or {})
            key = {"pk": source["pk"], "sk": source["sk"]}
            stored = self.dynamodb.get_item(TableName=write.table, Key=key, ConsistentRead=True).get("Item")
            return stored is not None and all(stored.get(k) == v for k, v in write.values.items())
        if operation == "BatchWriteItem":
            ((table, requests),) = body["RequestItems"].items()
            if "PutRequest" in requests[0]:
                put = requests[0]["PutRequest"]["Item"]
                key = {"pk": put["pk"], "sk": put["sk"]}
                return "Item" in self.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
            key = requests[0]["DeleteRequest"]["Key"]
            return "Item" not in self.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
        return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for name in (self.aggregates, self.rulesets, self.timeseries):
            self.dynamodb.delete_table(TableName=name)
        if self.kinesis is not None:
            self.kinesis.delete_stream(StreamName=self.stream_name)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _no_backoff(*adapters: Any) -> None:
    """The store's and the targets' backoff waits are skipped: the faults are what is under test,
    not the waiting (botocore's own backoff is skipped by the ``botocore_sleeps`` fixture)."""
    for adapter in adapters:
        if hasattr(adapter, "_sleep"):
            adapter._sleep = lambda _seconds: None
