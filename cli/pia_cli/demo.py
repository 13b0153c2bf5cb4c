"""``make demo``: the whole engine on a laptop, with no AWS account.

Starts moto's server on 127.0.0.1, deploys this repository's template.yaml to it, publishes a sample
rule file through the rule poller, streams a few days of generated Pinpoint events through the local
event source mapping into the aggregator, runs the evaluator and (one value-update interval later)
the action relay, and prints what the action targets ended up with. The emulator stops however the run ends.

The run uses a simulated clock (``--now``, default 2026-04-30T12:00:00Z) that every function reads,
so the sample's date rules line up with the generated events and the output is the same every time.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import boto3

from pia.rules.aggregates import VALUE_UPDATE_SECONDS, Aggregate
from pia.rules.ruleset import RulesetTable
from pia.rules.sheets import read_table
from pia.rules.table import parse_table
from pia_cli.datagen import generate, write_jsonl
from pia_cli.emulator import running_emulator
from pia_cli.local_stack import (
    LOCAL_EVENT_BUS,
    LOCAL_PINPOINT_APP,
    LOCAL_PROFILES_DOMAIN,
    TOOLING,
    EvaluatorRun,
    LocalStack,
    TargetView,
)
from pia_cli.runner import KinesisMappingRunner, RunnerStats

DATA = Path(__file__).resolve().parent / "data"
SAMPLE_RULES = DATA / "demo-rules.csv"
DEMO_NOW = "2026-04-30T12:00:00Z"
STACK_NAME = "pia-demo"
DEMO_UNIT_ROLLUPS = 10
SUPPORTED_TARGETS = ("pinpoint", "eventbridge", "customer-profiles")


@dataclass(frozen=True)
class RuleOutcome:
    row: int
    output_name: str
    description: str
    resets: bool
    users: int
    fired: int
    last_fire_only: bool = False
    writes_value: bool = False


@dataclass
class DemoResult:
    events_put: int = 0
    users: int = 0
    rules: list[RuleOutcome] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    fired: Counter[tuple[str, str]] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    mapping: dict[str, int] = field(default_factory=dict)
    calls: dict[str, Counter[str]] = field(default_factory=dict)
    seconds: float = 0.0


class Progress:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._started = time.monotonic()

    def __call__(self, message: str) -> None:
        self._out.write(f"[{time.monotonic() - self._started:6.1f}s] {message}\n")
        self._out.flush()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started


def _measured(rule: Any) -> str:
    """What Operator-V compares, or a value rule writes: ``sum(price)``, ``avg(price)``, ``distinct(sku)``."""
    if rule.aggregate is Aggregate.DISTINCT:
        return str(rule.aggregate_text)
    if rule.aggregate is Aggregate.COUNT and rule.writes_value:
        return "count"
    name = "sum" if rule.aggregate is Aggregate.COUNT else rule.aggregate.value
    return f"{name}({rule.metric_name or 'metric'})"


def _describe(rule: Any) -> str:
    def condition(label: str, cond: Any) -> str:
        return f"{label} {cond.op.value} {cond.target}"

    parts = ["absent"] if rule.absent else []
    if rule.count_condition is not None:
        parts.append(condition("count", rule.count_condition))
    if rule.sum_condition is not None:
        parts.append(condition(_measured(rule), rule.sum_condition))
    if rule.writes_value:
        parts.append(f"{_measured(rule)} written as the value")
    what = rule.event_name
    if rule.attribute_name is not None:
        what += f"[{rule.attribute_name}={rule.attribute_value}]"
    if rule.filter is not None:
        what += f"[{rule.filter.canonical}]"
    text = f"{what}: {' and '.join(parts)}"
    if rule.window_days is not None:
        text += f", last {rule.window_days} days"
    elif rule.start_date is not None:
        text += f", {rule.start_date}..{rule.finish_date}"
    if rule.reset:
        text += ", reset"
    if rule.cap is not None:
        text += f", cap {rule.cap.source}"
    return text


def run_demo(
    out: TextIO,
    *,
    targets: Sequence[str] = ("pinpoint",),
    users: int = 300,
    days: int = 7,
    seed: int = 7,
    now: str = DEMO_NOW,
    rules: Path = SAMPLE_RULES,
    output_dir: Path = Path("demo-output"),
) -> DemoResult:
    """Deploy, publish the rules, stream the events, run the scheduled functions, read the targets."""
    unknown = sorted(set(targets) - set(SUPPORTED_TARGETS))
    if unknown:
        raise SystemExit(
            f"demo: target {', '.join(unknown)} is not emulated locally; use {SUPPORTED_TARGETS}"
        )
    clock_time = datetime.fromisoformat(now.replace("Z", "+00:00")).astimezone(UTC)
    progress = Progress(out)
    result = DemoResult()
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / "functions.log"
    with log_path.open("w", encoding="utf-8") as logs, running_emulator() as emulator:
        progress(f"emulator: moto server on {emulator.endpoint_url} (function logs: {log_path})")
        clock = [clock_time]
        stack = _deploy(emulator.region, targets, clock, logs, progress)
        with stack:
            if "eventbridge" in targets:
                stack.capture_eventbridge()
            runner = _event_source_mapping(stack, result, progress)
            _publish_rules(stack, rules, result, progress)
            _stream_events(
                stack, result, progress, users=users, days=days, seed=seed, end=clock_time, to=output_dir
            )
            stats = runner.drain()
            result.mapping = {
                "invocations": stats.invocations,
                "retries": stats.retries,
                "bisections": stats.bisections,
                "records": stats.records_read,
                "discarded": stats.records_discarded,
            }
            _run_schedules(stack, clock, progress)
            _read_targets(stack, result)
    result.seconds = progress.elapsed
    progress("emulator stopped")
    return result


def _deploy(
    region: str, targets: Sequence[str], clock: list[datetime], logs: TextIO, progress: Progress
) -> LocalStack:
    parameters = {"PinpointApplicationId": LOCAL_PINPOINT_APP, "ActionTargets": ",".join(targets)}
    # The date rules' history takes the large-backfill path (Athena's query; DuckDB runs it locally).
    parameters["BackfillLambdaMaxObjects"] = "0"
    # Units of ten rollups, so the evaluator's state machine fans out over several units and continues
    # some of them with follow-ups, as a large deployment does with thousands.
    parameters["EvaluatorUnitRollups"] = str(DEMO_UNIT_ROLLUPS)
    if "eventbridge" in targets:
        parameters["EventBusName"] = LOCAL_EVENT_BUS
    if "customer-profiles" in targets:
        parameters.update(ProfilesDomainName=LOCAL_PROFILES_DOMAIN, ProfilesCreateMissing="true")
    stack = LocalStack.deploy(STACK_NAME, parameters, region=region, clock=lambda: clock[0], log_stream=logs)
    deployment = stack.deployment
    progress(
        f"deployed template.yaml as stack {STACK_NAME}: {len(deployment.resources)} resources, "
        f"{len(deployment.skipped)} skipped locally (alarms, dashboard, Pinpoint event stream, policies)"
    )
    return stack


def _event_source_mapping(stack: LocalStack, result: DemoResult, progress: Progress) -> KinesisMappingRunner:
    """The aggregator's mapping, reporting progress about five times over the run."""
    reported = [0]

    def on_batch(shard: str, size: int, stats: RunnerStats) -> None:
        if stats.records_read - reported[0] >= max(1000, result.events_put // 5) or (
            stats.records_read >= result.events_put
        ):
            reported[0] = stats.records_read
            done = f"{stats.records_read}/{result.events_put}"
            progress(f"aggregator: {done} records, {stats.invocations} invocations")

    runner = stack.mapping_runner("aggregator", on_batch=on_batch)
    mapping = runner.settings
    destination = (mapping.on_failure_destination or "none").rsplit(":", 1)[-1]
    progress(
        f"event source mapping: batch size {mapping.batch_size}, {mapping.starting_position}, "
        f"{mapping.maximum_retry_attempts} retries, "
        f"bisect {str(mapping.bisect_on_function_error).lower()}, on failure -> {destination}"
    )
    return runner


def _publish_rules(stack: LocalStack, rules: Path, result: DemoResult, progress: Progress) -> None:
    outcome = stack.publish_rules(rules)
    parsed = parse_table(read_table(rules.name, rules.read_bytes()))
    result.rejected = [str(issue) for issue in parsed.errors]
    progress(
        f"rule poller: {rules.name} uploaded -> ruleset v{outcome['version']}, "
        f"{outcome['rules']} rules live, {outcome['errors']} row(s) rejected"
    )


def _stream_events(
    stack: LocalStack,
    result: DemoResult,
    progress: Progress,
    *,
    users: int,
    days: int,
    seed: int,
    end: datetime,
    to: Path,
) -> None:
    events = generate(users=users, days=days, end=end, seed=seed)
    write_jsonl(to / "events.jsonl", events)
    result.users = len(
        {e.document.get("endpoint", {}).get("User", {}).get("UserId") for e in events} - {None}
    )
    result.events_put = stack.put_records((e.data, e.partition_key) for e in events)
    progress(
        f"generated {result.events_put} Pinpoint events ({result.users} signed-in users, "
        f"{days} days) and put them on the stream (also in {to / 'events.jsonl'})"
    )


def _run_schedules(stack: LocalStack, clock: list[datetime], progress: Progress) -> None:
    clock_time = clock[0]
    run = stack.run_evaluator()
    evaluation = run.output
    progress(f"evaluator (scheduled run at {clock_time:%Y-%m-%d %H:%M} UTC): {_brief(evaluation)}")
    if isinstance(evaluation, dict) and evaluation.get("backfill_path"):
        backfilled = len(evaluation["backfilled"])
        progress(f"backfill path: {evaluation['backfill_path']} ({backfilled} series)")
    progress(f"evaluator path: {_evaluator_path(run)}")
    if stack.has_function("action_relay"):
        # One value-update interval later, so the value outputs the rate limit held are sent too.
        clock[0] = clock_time + timedelta(seconds=VALUE_UPDATE_SECONDS)
        relayed = stack.run_scheduled("action_relay")
        progress(f"action relay: {_brief(relayed)}")


def _evaluator_path(run: EvaluatorRun) -> str:
    if run.stats is None or run.outcome is None:
        return run.path
    stats = run.stats
    follow_ups = stats.invocations - stats.map_items - 2 - stats.retries
    outcome = "" if run.outcome.status == "SUCCEEDED" else f", {run.outcome.status} {run.outcome.error}"
    return (
        f"{run.path} ({stats.map_items} units, {follow_ups} follow-ups, {stats.failed_children} failed, "
        f"{stats.retries} retries{outcome})"
    )


def _read_targets(stack: LocalStack, result: DemoResult) -> None:
    """What the targets hold, per rule of the live ruleset, and every caller's AWS calls."""
    view = stack.targets_view()
    result.attributes, result.fired, result.received = view.attributes, view.fired, view.received
    result.failures = stack.failure_messages("aggregator")
    ruleset = RulesetTable(
        stack.counter.watch(boto3.client("dynamodb", region_name=stack.deployment.region), TOOLING),
        stack.deployment.function("aggregator").environment["RULESET_TABLE"],
    ).current()
    result.rules = [_outcome(rule, view) for rule in sorted(ruleset.rules, key=lambda r: r.row)]
    for caller in stack.counter.callers():
        result.calls[caller] = stack.counter.by_service(caller)


def _outcome(rule: Any, view: TargetView) -> RuleOutcome:
    holders = [
        u
        for u, attrs in view.attributes.items()
        if attrs.get(rule.output_name) == "ready" or (rule.writes_value and rule.output_name in attrs)
    ]
    fired = {u: n for (u, name), n in view.fired.items() if name == rule.output_name}
    last_fire_only = rule.reset and not fired
    if last_fire_only:
        # Profiles hold state, not events: a reset rule leaves the time it last fired.
        fired = {u: 1 for u, attrs in view.attributes.items() if rule.output_name in attrs}
    return RuleOutcome(
        rule.row,
        rule.output_name,
        _describe(rule),
        rule.reset,
        len(fired) if rule.reset else len(holders),
        sum(fired.values()),
        last_fire_only,
        rule.writes_value,
    )


def _brief(response: Any) -> str:
    if isinstance(response, dict):
        return ", ".join(f"{k} {v}" for k, v in response.items() if not isinstance(v, dict | list))
    return str(response)


def render_summary(result: DemoResult, out: TextIO, examples: int = 3) -> None:
    write = out.write
    write("\n== Rules ==\n")
    width = max((len(r.output_name) for r in result.rules), default=10)
    for rule in result.rules:
        if rule.resets and rule.last_fire_only:
            reach = f"{rule.users} users fired (last time kept)"
        elif rule.resets:
            reach = f"{rule.users} users, {rule.fired} events fired"
        elif rule.writes_value:
            reach = f"{rule.users} users with a value"
        else:
            reach = f"{rule.users} users ready"
        write(f"  row {rule.row:<3} {rule.output_name:<{width}}  {reach:<28} {rule.description}\n")
    for issue in result.rejected:
        write(f"  rejected: {issue}\n")
    write("\n== Example users ==\n")
    ranked = sorted(
        result.attributes,
        key=lambda u: (
            -len(result.attributes[u]) - sum(n for (v, _), n in result.fired.items() if v == u),
            u,
        ),
    )
    for user in ranked[:examples]:
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(result.attributes[user].items()))
        fired = ", ".join(f"{name} x{n}" for (v, name), n in sorted(result.fired.items()) if v == user)
        write(f"  {user}: {attrs}" + (f"; fired {fired}" if fired else "") + "\n")
    write("\n== trk_ events fired ==\n")
    by_type: Counter[str] = Counter()
    for (_, name), n in result.fired.items():
        by_type[name] += n
    total = sum(by_type.values())
    write(
        f"  {total} events"
        + (": " + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())) if total else "")
        + "\n"
    )
    received = ", ".join(f"{k} {v}" for k, v in sorted(result.received.items())) or "nothing"
    write(f"  targets received: {received}\n")
    write("\n== On-failure queue ==\n")
    if not result.failures:
        mapping = result.mapping
        write(f"  0 messages: all {mapping.get('records', 0)} records were processed ")
        write(f"({mapping.get('invocations', 0)} invocations, {mapping.get('retries', 0)} retries)\n")
    for message in result.failures:
        info = message.get("KinesisBatchInfo", {})
        condition = message["requestContext"]["condition"]
        write(
            f"  {condition}: {info.get('batchSize')} records of {info.get('shardId')} "
            f"({info.get('startSequenceNumber')}..{info.get('endSequenceNumber')})\n"
        )
    write("\n== AWS calls ==\n")
    services = sorted({s for calls in result.calls.values() for s in calls})
    header = "".join(f"{s:>10}" for s in services)
    write(f"  {'caller':<24}{header}{'total':>8}\n")
    for caller, calls in sorted(result.calls.items()):
        row = "".join(f"{calls.get(s, 0):>10}" for s in services)
        write(f"  {caller:<24}{row}{sum(calls.values()):>8}\n")
    write(f"\nDone in {result.seconds:.0f} s; nothing is left running.\n")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pia_cli.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets", default="pinpoint", help="comma-separated: pinpoint, eventbridge, customer-profiles"
    )
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--now", default=DEMO_NOW, help="the simulated clock (ISO 8601)")
    parser.add_argument("--rules", type=Path, default=SAMPLE_RULES, help="a .csv or .xlsx rule table")
    parser.add_argument("--output-dir", type=Path, default=Path("demo-output"))
    parser.add_argument(
        "--json", action="store_true", help="also write the summary as JSON to the output dir"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    try:
        result = run_demo(
            sys.stdout,
            targets=targets,
            users=args.users,
            days=args.days,
            seed=args.seed,
            now=args.now,
            rules=args.rules,
            output_dir=args.output_dir,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: the emulator is stopped and nothing is left running", file=sys.stderr)
        return 130
    render_summary(result, sys.stdout)
    if args.json:
        (args.output_dir / "summary.json").write_text(json.dumps(_as_json(result), indent=2) + "\n")
    return 0


def _as_json(result: DemoResult) -> dict[str, Any]:
    return {
        "events_put": result.events_put,
        "rules": [vars(r) for r in result.rules],
        "rejected": result.rejected,
        "fired": sum(result.fired.values()),
        "on_failure_messages": len(result.failures),
        "mapping": result.mapping,
        "calls": {caller: dict(calls) for caller, calls in result.calls.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
