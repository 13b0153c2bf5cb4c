"""``make bench``: run every scenario, write bench/results.json and BENCHMARKS.md, print the table.

results.json layout (every figure a number):
- top level: the canonical scenario's keys as issue #7 names them (``aggregator.*``, ``evaluator.*``)
  and their ``baseline.*`` twins (``baseline.calls_per_event`` is the twin of
  ``aggregator.calls_per_event``, and so on);
- ``scaled``: the same per-path keys for the 10x and 100x scenarios;
- ``details``: the counts behind each figure (round trips per operation, items written, time);
- ``cost_per_million_events``: the cost model, per path and line, in USD;
- ``meta``: date, command, interpreter, machine, price date, how the scaled baselines were sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pia_cli.local_lambda import prepare_process

prepare_process()

from bench import cpu, filters, imports, memory, report  # noqa: E402
from bench.backfill_paths import run_backfill_paths  # noqa: E402
from bench.cost import PRICES_AS_OF, per_million  # noqa: E402
from bench.evaluator_run import EvaluatorUnavailable, run_evaluator  # noqa: E402
from bench.evaluator_scale import run_evaluator_scale, scale_keys  # noqa: E402
from bench.runs import Run, run_aggregator, run_baseline  # noqa: E402
from bench.scenario import (  # noqa: E402
    CANONICAL,
    DEPLOYED_BATCH_SIZE,
    DEPLOYED_WINDOW_SECONDS,
    Scenario,
    Sessions,
    floor,
)
from bench.world import aws_world  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
COMMAND = "make bench"
SCALED = (
    (Scenario("10x", users=100, events_per_user=100), 5),
    (Scenario("100x", users=100, events_per_user=1000), 100),
)
"""Each scaled scenario and the baseline's sampling stride. The aggregator runs every batch. The
baseline spends about 4 ms of moto per event (10x in full would take 45 s, 100x 7 minutes), so it
runs every 5th (10x) or 100th (100x) batch, each on a table seeded, unmetered, with the counts the
skipped batches would have left: its per-event work depends only on that state."""
COSTED_SCALE = "100x"
SESSIONS = (
    (
        Sessions(
            "sessions-quiet",
            users=1000,
            batch_size=DEPLOYED_BATCH_SIZE,
            window_seconds=DEPLOYED_WINDOW_SECONDS,
            records_per_second=1.0,
        ),
        10,
    ),
    (
        Sessions(
            "sessions-busy",
            users=1000,
            batch_size=DEPLOYED_BATCH_SIZE,
            window_seconds=DEPLOYED_WINDOW_SECONDS,
            records_per_second=1000.0,
        ),
        7,
    ),
)
"""The sessions scenario at a quiet stream and at a busy shard (1,000 records a second), with the
deployed batching settings; the baseline samples every 10th / 7th batch, seeded as for the scaled
scenarios."""
NETWORK_MS = 5.0
"""As in the cost model: an in-region round trip."""
SHARD_RECORDS_PER_SECOND = 1_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def both_paths(scenario: Scenario, baseline_every: int) -> tuple[Run, Run]:
    with aws_world() as world:
        started = time.perf_counter()
        ours = run_aggregator(world, scenario)
        took = time.perf_counter() - started
        log(f"  {scenario.name}: aggregator, {scenario.events:,} events, {took:.1f} s")
        started = time.perf_counter()
        theirs = run_baseline(world, scenario, every=baseline_every)
        took = time.perf_counter() - started
        log(f"  {scenario.name}: baseline, {theirs.events:,} events, {took:.1f} s")
    return ours, theirs


def floor_figures(scenario: Scenario, ours: Run) -> dict[str, float]:
    """The write units the scenario itself says exactly-once needs (one per unsettled counter change
    per batch, and one sent mark per batch that sent actions), beside what the aggregator wrote."""
    bound = floor(scenario)
    measured = ours.usage.write_units / ours.events
    marks = bound.batches_with_crossings / bound.events
    return {
        "unsettled_changes_per_event": bound.per_event,
        "sent_marks_per_event": marks,
        "measured_write_units_per_event": measured,
        "difference": measured - bound.per_event,
        "beyond_sent_marks": measured - bound.per_event - marks,
    }


def path_keys(ours: Run, theirs: Run) -> dict[str, float]:
    keys: dict[str, float] = {}
    for name, value in ours.figures().items():
        keys[f"aggregator.{name}"] = value
    for name, value in theirs.figures().items():
        keys[f"baseline.{name}"] = value
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--no-scaled", action="store_true", help="canonical scenario only (quick look)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    log("canonical scenario: 100 users x 10 events, batches of 100")
    ours, theirs = both_paths(CANONICAL, 1)
    results: dict[str, Any] = path_keys(ours, theirs)
    details: dict[str, Any] = {"canonical": {"aggregator": ours.details(), "baseline": theirs.details()}}

    log("CPU per record against a bare decode (aggregator with in-memory fakes)")
    cpu_ratio = cpu.measure(CANONICAL)
    results["aggregator.cpu_ratio_vs_decode"] = cpu_ratio.ratio
    details["cpu"] = cpu_ratio.to_json()

    log("Filter: write units of a three-clause filter; CPU with 50 filtered rules live")
    filter_cost = filters.measure(CANONICAL, results["aggregator.write_units_per_event"])
    results["aggregator.filter_write_unit_ratio"] = filter_cost.write_unit_ratio
    results["aggregator.cpu_us_per_record_50_filtered_rules"] = filter_cost.cpu_us_per_record[
        filters.ALL_PASS
    ]
    details["filters"] = filter_cost.to_json()

    log("peak RSS of a warm aggregator invocation with a full state cache")
    rss = memory.measure()
    details["memory"] = rss.to_json()
    results["aggregator.peak_rss_mb"] = rss.peak_rss_mb

    log("cold import of the handler module against import boto3")
    import_ratio = imports.measure()
    results["aggregator.import_ratio_vs_boto3"] = import_ratio.ratio
    details["import"] = {**import_ratio.to_json(), "slowest_imports_ms": dict(imports.profile())}
    log("cold start: import and first invocation against warm ones, against moto")
    cold = imports.first_invocation()
    details["import"]["cold_start"] = cold.to_json()
    results["aggregator.first_invocation_extra_vs_boto3"] = (
        cold.first_invocation_extra_ms / import_ratio.boto3_ms
    )

    log("evaluator: 30-day date rule over 50 users x 30 days x 20 events")
    try:
        evaluator = run_evaluator()
        results.update(evaluator.figures())
        details["evaluator"] = evaluator.details()
    except EvaluatorUnavailable as exc:
        log(f"  evaluator: not yet available ({exc})")
        details["evaluator"] = {"available": 0}

    log("evaluator at scale: a 30-day rolling rule at 1k, 10k and 100k users (in-memory DynamoDB stand-in)")
    details["evaluator_scale"] = run_evaluator_scale()
    results.update(scale_keys(details["evaluator_scale"]))

    log("backfill: in-Lambda scan against the Athena query (DuckDB) at 1k, 10k and 100k archived events")
    details["backfill_paths"] = [paths.figures() for paths in run_backfill_paths()]

    record_bytes = len(CANONICAL.records()[0].data)
    costs = {
        "Aggregator (canonical)": per_million(ours, record_bytes),
        "Baseline (canonical)": per_million(theirs, record_bytes),
    }
    scaled: dict[str, dict[str, float]] = {}
    sampling: dict[str, str] = {}
    if not args.no_scaled:
        for scenario, every in SCALED:
            log(f"{scenario.name} scenario: {scenario.users} users x {scenario.events_per_user} events")
            s_ours, s_theirs = both_paths(scenario, every)
            scaled[scenario.name] = path_keys(s_ours, s_theirs)
            details[scenario.name] = {"aggregator": s_ours.details(), "baseline": s_theirs.details()}
            sampling[scenario.name] = "every batch" if every == 1 else f"every {every}th batch, seeded"
            if scenario.name == COSTED_SCALE:
                costs[f"Aggregator ({scenario.name})"] = per_million(s_ours, record_bytes)
                costs[f"Baseline ({scenario.name})"] = per_million(s_theirs, record_bytes)
    if not args.no_scaled:
        for scenario, every in SESSIONS:
            log(f"{scenario.name} scenario: {scenario.events:,} events of {scenario.users} users in sessions")
            s_ours, s_theirs = both_paths(scenario, every)
            scaled[scenario.name] = path_keys(s_ours, s_theirs)
            details[scenario.name] = {"aggregator": s_ours.details(), "baseline": s_theirs.details()}
            details[scenario.name]["floor"] = floor_figures(scenario, s_ours)
            scaled[scenario.name]["aggregator.floor_write_units_per_event"] = details[scenario.name]["floor"][
                "unsettled_changes_per_event"
            ]
            sampling[scenario.name] = f"every {every}th batch, seeded"
            costs[f"Aggregator ({scenario.name})"] = per_million(s_ours, record_bytes)
            costs[f"Baseline ({scenario.name})"] = per_million(s_theirs, record_bytes)
    throughput: dict[str, float] = {}
    for name, figures in {"canonical": results, **scaled}.items():
        seconds = (
            cpu_ratio.ours_us_per_record / 1e6 + figures["aggregator.calls_per_event"] * NETWORK_MS / 1000
        )
        throughput[name] = 1 / seconds
    results["aggregator.records_per_second"] = throughput["canonical"]
    for name, value in throughput.items():
        if name in scaled:
            scaled[name]["aggregator.records_per_second"] = value
    details["throughput"] = {
        "model": f"1 / (CPU per record with in-memory adapters + calls per event x {NETWORK_MS} ms)",
        "shard_limit_records_per_second": SHARD_RECORDS_PER_SECOND,
        **throughput,
    }
    document = {
        **results,
        "scaled": scaled,
        "cost_per_million_events": {
            path: {line.item: float(line.usd_per_million_events) for line in lines}
            for path, lines in costs.items()
        },
        "details": details,
        "meta": {
            "date": date,
            "command": COMMAND,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "prices_as_of": PRICES_AS_OF,
            "baseline_sampling": sampling,
            "seconds": round(time.perf_counter() - started, 1),
        },
    }
    RESULTS.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    previous = MARKDOWN.read_text() if MARKDOWN.exists() else ""
    markdown = report.benchmarks_markdown(document, costs, previous)
    MARKDOWN.write_text(markdown)
    print(report.figures_table(results, scaled))
    elapsed = time.perf_counter() - started
    log(f"wrote {RESULTS.relative_to(ROOT)} and {MARKDOWN.relative_to(ROOT)} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
