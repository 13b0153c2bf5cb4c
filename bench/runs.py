"""One path (the real aggregator handler, or the naive baseline) through one scenario, metered.

A run starts cold (a fresh container), so its one read of the ruleset pointer is in the counts;
that read happens once per container and then once a minute, whatever the traffic, so it is shown
apart from the reads that grow with events.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bench.baseline import NaiveAggregator, seed_counters
from bench.metering import Usage
from bench.scenario import EVENT_NAME, Scenario
from bench.world import AGGREGATES_TABLE, BASELINE_TABLE, RULESET_TABLE, World, function_environment
from pia.counting.store import CounterStore
from pia_cli.local_lambda import LocalFunction
from pia_cli.recorder import PinpointRecorder

OUTPUT_NAME = f"trk_{EVENT_NAME}"


class WrongResult(AssertionError):
    """A path produced the wrong counts or attributes: its figures would mean nothing."""


@dataclass(frozen=True)
class Run:
    """What one path did with the events it was given (all of a scenario's, or a sample of its
    batches). Per-crossing figures divide by the scenario's crossings per event, so a sample of
    batches estimates the whole run rather than the few crossings that fell in the sample."""

    path: str
    events: int
    crossings_per_event: float
    usage: Usage
    wall_seconds: float
    cpu_seconds: float
    invocations: int
    container_reads: int = 0

    @property
    def event_reads(self) -> int:
        """Item reads that grow with events: all of them, less the aggregator's ruleset pointer, which
        it reads once per container and then once a minute, however many events arrive."""
        return self.usage.item_reads - self.container_reads

    def figures(self) -> dict[str, float]:
        return {
            "calls_per_event": self.usage.calls / self.events,
            "item_reads_per_event": self.event_reads / self.events,
            "write_units_per_event": self.usage.write_units / self.events,
            "pinpoint_calls_per_crossing": self.usage.calls_to("pinpoint")
            / self.events
            / self.crossings_per_event,
        }

    def details(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "crossings": round(self.crossings_per_event * self.events, 3),
            "invocations": self.invocations,
            "container_reads": self.container_reads,
            "read_units_per_event": self.usage.read_units / self.events,
            "wall_ms_per_event": 1000 * self.wall_seconds / self.events,
            "cpu_ms_per_event": 1000 * self.cpu_seconds / self.events,
            **self.usage.to_json(),
        }


def _timed(
    batches: Iterable[Mapping[str, Any]], invoke: Callable[[Mapping[str, Any]], Any]
) -> tuple[float, float, int]:
    wall = cpu = 0.0
    count = 0
    for batch in batches:
        w, c = time.perf_counter(), time.process_time()
        invoke(batch)
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
        count += 1
    return wall, cpu, count


def run_aggregator(world: World, scenario: Scenario) -> Run:
    """The real handler (src/aggregator/app.py), cold, its Pinpoint calls answered by the recorder."""
    recorder = PinpointRecorder()
    failures: list[dict[str, Any]] = []

    def invoke_checked(function: LocalFunction, batch: Mapping[str, Any]) -> None:
        response = function.invoke(batch)
        failures.extend(response.get("batchItemFailures", []))

    with LocalFunction(
        "aggregator",
        environment=function_environment(),
        overrides={"pinpoint": lambda _region: recorder.client()},
        log_stream=io.StringIO(),
    ) as function:
        batches = list(scenario.batches())
        with world.meter.measure() as usage:
            wall, cpu, count = _timed(batches, lambda b: invoke_checked(function, b))
    if failures:
        raise WrongResult(f"aggregator reported {len(failures)} failed records, first {failures[0]}")
    store = CounterStore(world.plain_client("dynamodb"), AGGREGATES_TABLE)
    _check(
        "aggregator",
        scenario,
        [(s.user_id, s.count) for r in world.ruleset.rules for s in store.counters_for_rule(r.rule_id)],
        recorder,
        settles=True,
    )
    container_reads = usage.reads_by_table.get(RULESET_TABLE, 0)
    crossings = scenario.crossings() / scenario.events
    return Run("aggregator", scenario.events, crossings, usage, wall, cpu, count, container_reads)


def run_baseline(world: World, scenario: Scenario, *, every: int = 1) -> Run:
    """The naive loop on every ``every``-th batch; before each sampled batch its table is seeded
    (unmetered) with the counts the skipped batches would have left, so each sampled event does
    exactly what it would have done in a full run."""
    recorder = PinpointRecorder()
    naive = NaiveAggregator(
        world.metered_client("dynamodb"),
        recorder.client(),
        RULESET_TABLE,
        BASELINE_TABLE,
        function_environment()["PINPOINT_APP_ID"],
    )
    seeding = world.plain_client("dynamodb")
    batches = list(scenario.batches())
    stream = scenario.stream()
    cuts = scenario.cuts()
    rule = world.ruleset.rules[0]
    sampled = [i for i in range(len(batches)) if i % every == 0]
    wall = cpu = 0.0
    events = 0
    with world.meter.measure() as usage:
        for index in sampled:
            start, end = cuts[index]
            users = set(stream[start:end])
            if every > 1:
                seed_counters(seeding, BASELINE_TABLE, rule, stream[:start], users)
            w, c = time.perf_counter(), time.process_time()
            naive.handle(batches[index])
            wall += time.perf_counter() - w
            cpu += time.process_time() - c
            events += len(batches[index]["Records"])
    if every == 1:
        _check("baseline", scenario, naive.counts(seeding), recorder)
    crossings = scenario.crossings() / scenario.events
    return Run("baseline", events, crossings, usage, wall, cpu, len(sampled))


def _check(
    path: str,
    scenario: Scenario,
    counts: list[tuple[str, int]],
    recorder: PinpointRecorder,
    *,
    settles: bool = False,
) -> None:
    """Each user counted exactly once per event; the aggregator's counter settles at the crossing
    (``reset = no``: nothing after it can change the output), the naive loop counts on."""
    expected = scenario.expected_counts(settles=settles)
    wrong = [(u, c, expected.get(u)) for u, c in counts if c != expected.get(u)][:3]
    if len(counts) != len(expected) or wrong:
        raise WrongResult(f"{path}: {len(counts)} counters, expected {len(expected)}; wrong counts {wrong}")
    ready = sum(1 for attrs in recorder.user_attributes.values() if attrs.get(OUTPUT_NAME) == "ready")
    if ready != scenario.crossings():
        raise WrongResult(f"{path}: {ready} users marked ready in Pinpoint, expected {scenario.crossings()}")
