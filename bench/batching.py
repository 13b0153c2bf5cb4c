"""``python -m bench.batching``: the sessions scenario across batching settings, to choose the defaults.

For each ``BatchSize`` and ``MaximumBatchingWindowInSeconds``, at the quiet and the busy level: write
units per event, the $ ratio against the naive baseline in the same run, the S3 share (one raw-archive
PUT per batch), and the delay a record waits for its batch. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from pia_cli.local_lambda import prepare_process

prepare_process()

from bench.cost import per_million  # noqa: E402
from bench.runs import run_aggregator, run_baseline  # noqa: E402
from bench.scenario import Sessions, batch_delays, floor  # noqa: E402
from bench.world import aws_world  # noqa: E402

QUIET = Sessions("sessions-quiet", users=1000, records_per_second=1.0)
BUSY = Sessions("sessions-busy", users=1000, records_per_second=1000.0)


def measure(scenario: Sessions, baseline_every: int) -> dict[str, float]:
    with aws_world() as world:
        ours = run_aggregator(world, scenario)
        theirs = run_baseline(world, scenario, every=baseline_every)
    record_bytes = len(scenario.records()[0].data)
    mine = {line.item: float(line.usd_per_million_events) for line in per_million(ours, record_bytes)}
    naive = {line.item: float(line.usd_per_million_events) for line in per_million(theirs, record_bytes)}
    mean_delay, max_delay = batch_delays(scenario)
    bound = floor(scenario)
    return {
        "batches": len(scenario.cuts()),
        "events_per_batch": scenario.events / len(scenario.cuts()),
        "write_units_per_event": ours.usage.write_units / ours.events,
        "floor_per_event": bound.per_event,
        "floor_with_marks_per_event": bound.with_sent_marks_per_event,
        "usd": mine["Total"],
        "usd_dynamodb": mine["DynamoDB writes"],
        "usd_s3": mine["S3 PUT requests"],
        "usd_baseline": naive["Total"],
        "ratio": mine["Total"] / naive["Total"],
        "mean_delay_s": mean_delay,
        "max_delay_s": max_delay,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__.splitlines()[0])
    parser.add_argument("--windows", default="60,120,180,300")
    parser.add_argument("--sizes", default="500,1000")
    parser.add_argument("--busy", action="store_true", help="also the busy shard (window-independent)")
    args = parser.parse_args(argv)
    rows: list[tuple[str, int, float, dict[str, float]]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        for window in (float(w) for w in args.windows.split(",")):
            scenario = replace(QUIET, batch_size=size, window_seconds=window)
            rows.append(("quiet", size, window, measure(scenario, 10)))
            print(f"quiet {size} {window:g}: {rows[-1][3]}", file=sys.stderr, flush=True)
        if args.busy:
            scenario = replace(BUSY, batch_size=size, window_seconds=float(args.windows.split(",")[0]))
            rows.append(("busy", size, scenario.window_seconds, measure(scenario, 7)))
            print(f"busy {size}: {rows[-1][3]}", file=sys.stderr, flush=True)
    print(
        "| level | BatchSize | window s | events/batch | WU/event | floor | $/M events | DynamoDB $ | S3 $ "
        "| naive $ | ratio | mean delay s | max delay s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for level, size, window, f in rows:
        cells = [level, str(size), f"{window:g}", f"{f['events_per_batch']:.0f}"]
        cells += [f"{f[k]:.3f}" for k in ("write_units_per_event", "floor_per_event", "usd", "usd_dynamodb")]
        cells += [f"{f['usd_s3']:.3f}", f"{f['usd_baseline']:.3f}", f"{f['ratio']:.3f}x"]
        cells += [f"{f['mean_delay_s']:.0f}", f"{f['max_delay_s']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
