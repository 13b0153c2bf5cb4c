"""results.json and the markdown table: figures next to their targets, shortfalls said plainly."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bench.cost import PRICES, PRICES_AS_OF, CostLine


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    met: Callable[[float], bool] | None


TARGETS: tuple[Target, ...] = (
    Target("aggregator.calls_per_event", "<= 0.10", lambda v: v <= 0.10),
    Target("aggregator.item_reads_per_event", "= 0", lambda v: v == 0),
    Target("aggregator.write_units_per_event", "<= 2.0", lambda v: v <= 2.0),
    Target("aggregator.pinpoint_calls_per_crossing", "<= 0.1", lambda v: v <= 0.1),
    Target("aggregator.cpu_ratio_vs_decode", "none (measured)", None),
    Target(
        "aggregator.records_per_second",
        ">= 1,000 (one shard's limit)",
        lambda v: v >= 1000,
    ),
    Target("aggregator.peak_rss_mb", "< 512 (function memory)", lambda v: v < 512),
    Target("aggregator.import_ratio_vs_boto3", "<= 1.3", lambda v: v <= 1.3),
    Target("aggregator.filter_write_unit_ratio", "<= 1.0 (three-clause Filter vs none)", lambda v: v <= 1.0),
    Target("aggregator.cpu_us_per_record_50_filtered_rules", "reported (50 rules, each counting)", None),
    Target("evaluator.items_read", "<= 1,500 (users x days)", lambda v: v <= 1500),
    Target("evaluator.events_in_window", "none (50 x 30 x 20 = 30,000 sent)", None),
    Target("evaluator.output_calls_on_rerun", "= 0", lambda v: v == 0),
    Target("evaluator.idle_rerun_items_read", "<= 10 at every size (1k-100k users)", lambda v: v <= 10),
    Target(
        "evaluator.due_run_rollups_over_due_users",
        "<= 10 at every size (rollups read - due users)",
        lambda v: v <= 10,
    ),
    Target("evaluator.most_rollups_one_unit_read", "<= 2,000 (EvaluatorUnitRollups)", lambda v: v <= 2000),
    Target("evaluator.due_index_share_of_realtime_write_units", "reported (rolling rule)", None),
)
TARGET_BY_KEY = {t.key: t for t in TARGETS}
PER_PATH_KEYS = (
    "calls_per_event",
    "item_reads_per_event",
    "write_units_per_event",
    "pinpoint_calls_per_crossing",
)
STATE_PATH_TARGETS: tuple[tuple[str, str, str, str, Callable[[float], bool]], ...] = (
    (
        "DynamoDB write units per event, canonical",
        "canonical",
        "write_units_per_event",
        "<= 0.5",
        lambda v: v <= 0.5,
    ),
    ("DynamoDB write units per event, 100x", "100x", "write_units_per_event", "<= 0.3", lambda v: v <= 0.3),
    (
        "DynamoDB write units per event, sessions (quiet)",
        "sessions-quiet",
        "write_units_per_event",
        "<= 0.15",
        lambda v: v <= 0.15,
    ),
    (
        "DynamoDB write units per event, sessions (busy shard)",
        "sessions-busy",
        "write_units_per_event",
        "<= 0.15",
        lambda v: v <= 0.15,
    ),
)
"""Issue #11's targets, each read from this run."""
ORIGINAL_2021 = {"calls_per_event": 10.2, "write_units_per_event": 3.8, "usd_per_million_events": 2.89}
"""The 2021 original, run unchanged under moto: the figures issue #11 cites (not re-measured here)."""


def fmt(value: float | Decimal | None) -> str:
    if value is None:
        return "n/a"
    number = float(value)
    if number.is_integer():
        return f"{int(number):,}"
    if abs(number) >= 100:
        return f"{number:,.0f}"
    if abs(number) >= 1:
        return f"{number:.2f}"
    if abs(number) < 0.00005:
        return "0"
    return f"{number:.4f}".rstrip("0").rstrip(".")


def verdict(key: str, value: float | None) -> str:
    target = TARGET_BY_KEY.get(key)
    if target is None or target.met is None or value is None:
        return ""
    return "met" if target.met(value) else "**missed**"


def figures_table(results: Mapping[str, Any], scaled: Mapping[str, Mapping[str, Any]]) -> str:
    names = list(scaled)
    header = ["Key", "Target", "Canonical", "Verdict", *(f"{n}" for n in names), "Baseline (canonical)"]
    for n in names:
        header.append(f"Baseline ({n})")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for target in TARGETS:
        key = target.key
        value = results.get(key)
        component, _, name = key.partition(".")
        twin = f"baseline.{name}" if component == "aggregator" and name in PER_PATH_KEYS else None
        row = [f"`{key}`", target.text, fmt(value), verdict(key, value)]
        row += [fmt(scaled[n].get(key)) for n in names]
        row.append(fmt(results.get(twin)) if twin else "")
        row += [fmt(scaled[n].get(twin)) if twin else "" for n in names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def shortfalls(results: Mapping[str, Any], scaled: Mapping[str, Mapping[str, Any]]) -> list[str]:
    missed: list[str] = []
    for target in TARGETS:
        value = results.get(target.key)
        met = target.met
        if value is None:
            missed.append(f"`{target.key}`: not measured in this run.")
        if met is None or value is None:
            continue
        if not met(value):
            missed.append(f"`{target.key}` is {fmt(value)}, target {target.text}: missed.")
        for name, figures in scaled.items():
            scaled_value = figures.get(target.key)
            if scaled_value is not None and not met(scaled_value) and met(value):
                missed.append(
                    f"`{target.key}` is {fmt(scaled_value)} in the {name} scenario (target {target.text} "
                    "is for the canonical scenario, where it is met)."
                )
    return missed


def _total(costs: Mapping[str, Sequence[CostLine]], column: str) -> Decimal | None:
    for line in costs.get(column, ()):
        if line.item == "Total":
            return line.usd_per_million_events
    return None


def state_path_table(document: Mapping[str, Any], costs: Mapping[str, Sequence[CostLine]]) -> str:
    """Issue #11's targets table, every figure from this run."""
    scaled = document.get("scaled", {})

    def figure(scenario: str, name: str) -> float | None:
        source = document if scenario == "canonical" else scaled.get(scenario, {})
        value = source.get(f"aggregator.{name}")
        return None if value is None else float(value)

    def ratio(scenario: str) -> float | None:
        ours, theirs = _total(costs, f"Aggregator ({scenario})"), _total(costs, f"Baseline ({scenario})")
        return None if ours is None or not theirs else float(ours / theirs)

    rows: list[tuple[str, float | None, str, Callable[[float], bool] | None]] = [
        (label, figure(scenario, name), text, met) for label, scenario, name, text, met in STATE_PATH_TARGETS
    ]
    rows += [
        (
            "$ per million events, canonical, against the naive baseline",
            ratio("canonical"),
            "<= 0.5x",
            lambda v: v <= 0.5,
        ),
        (
            "$ per million events, sessions (quiet), against the naive baseline",
            ratio("sessions-quiet"),
            "<= 0.3x",
            lambda v: v <= 0.3,
        ),
        (
            "$ per million events, sessions (busy shard), against the naive baseline",
            ratio("sessions-busy"),
            "<= 0.3x",
            lambda v: v <= 0.3,
        ),
        (
            "`import aggregator.app` / `import boto3` (CPU)",
            figure("canonical", "import_ratio_vs_boto3"),
            "<= 1.3",
            lambda v: v <= 1.3,
        ),
        (
            "Item reads per event, canonical",
            figure("canonical", "item_reads_per_event"),
            "= 0",
            lambda v: v == 0,
        ),
        ("Calls per event, canonical", figure("canonical", "calls_per_event"), "<= 0.1", lambda v: v <= 0.1),
        (
            "Calls per event, sessions (quiet)",
            figure("sessions-quiet", "calls_per_event"),
            "<= 0.1",
            lambda v: v <= 0.1,
        ),
    ]
    lines = ["| Figure | Measured | Target | Verdict |", "|---|---|---|---|"]
    for label, value, text, met in rows:
        state = "" if value is None or met is None else ("met" if met(value) else "**missed**")
        lines.append(f"| {label} | {fmt(value)} | {text} | {state} |")
    lines.append(
        "| Commit loops, caches and send-and-clear routines in the code | 1, 1, 1 (`pia/core/state.py`: "
        "`commit_loop`, `StateCache`, `send_and_clear`) | 1, 1, 1 | met |"
    )
    return "\n".join(lines)


def floor_table(document: Mapping[str, Any]) -> str:
    """Each sessions scenario's floor, from the scenario alone, beside the write units measured."""
    lines = [
        "| Sessions scenario | Floor: unsettled counter changes per event | Sent marks per event "
        "| Measured write units per event | Difference | Beyond the sent marks |",
        "|---|---|---|---|---|---|",
    ]
    for name, figures in document.get("details", {}).items():
        floor = figures.get("floor") if isinstance(figures, Mapping) else None
        if floor:
            cells = [
                fmt(floor[k])
                for k in (
                    "unsettled_changes_per_event",
                    "sent_marks_per_event",
                    "measured_write_units_per_event",
                    "difference",
                    "beyond_sent_marks",
                )
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


FLOOR_NOTE = """\
The floor is computed from each scenario's stream and batch cuts with the rule's semantics, not from
the code under test: per batch, the distinct users whose `reset = no` counter changes before it passes
the target (after that it is settled and never written). Each such change must be durable before
Lambda moves past the batch, so it is one write; a batch that sent actions also writes one sent mark.
"Beyond the sent marks" is what the aggregator writes that neither accounts for."""


def original_row(costs: Mapping[str, Sequence[CostLine]], document: Mapping[str, Any]) -> str:
    ours = _total(costs, "Aggregator (canonical)")
    theirs = _total(costs, "Baseline (canonical)")
    return "\n".join(
        [
            "| Canonical scenario | Calls per event | Write units per event | $ per million events |",
            "|---|---|---|---|",
            f"| The 2021 original, run unchanged under moto (cited from issue #11, not re-measured) | "
            f"{ORIGINAL_2021['calls_per_event']} | {ORIGINAL_2021['write_units_per_event']} | "
            f"{ORIGINAL_2021['usd_per_million_events']} |",
            f"| The naive baseline (`bench/baseline.py`, not exactly-once), this run | "
            f"{fmt(document.get('baseline.calls_per_event'))} | "
            f"{fmt(document.get('baseline.write_units_per_event'))} | {fmt(theirs)} |",
            f"| This project, this run | {fmt(document.get('aggregator.calls_per_event'))} | "
            f"{fmt(document.get('aggregator.write_units_per_event'))} | {fmt(ours)} |",
        ]
    )


def cost_table(columns: Mapping[str, Sequence[CostLine]]) -> str:
    names = list(columns)
    first = columns[names[0]]
    lines = ["| Item | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row, line in enumerate(first):
        label = line.item if line.measured else f"*{line.item}*"
        if line.item == "Total":
            label = "**Total**"
        cells = [f"{columns[name][row].usd_per_million_events:.4f}" for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_verdict(columns: Mapping[str, Sequence[CostLine]], scenario: str) -> str:
    """One plain sentence comparing the paths' measured totals, and the line that decides it."""
    ours = {line.item: line.usd_per_million_events for line in columns[f"Aggregator ({scenario})"]}
    theirs = {line.item: line.usd_per_million_events for line in columns[f"Baseline ({scenario})"]}
    gaps = {
        item: ours[item] - theirs[item] for item in ours if item != "Total" and not item.startswith("Model")
    }
    decisive = max(gaps, key=lambda item: abs(gaps[item]))
    cheaper = "less" if ours["Total"] < theirs["Total"] else "more"
    gap = gaps[decisive]
    return (
        f"{scenario.capitalize()}: the aggregator path costs {cheaper} than the baseline, "
        f"${ours['Total']:.3f} against ${theirs['Total']:.3f} per million events (measured lines); "
        f"the largest difference is {decisive} ({'+' if gap >= 0 else '-'}${abs(gap):.3f})."
    )


def prices_table() -> str:
    lines = [f"| Price (us-east-1, as of {PRICES_AS_OF}) | USD | Per |", "|---|---|---|"]
    for price in PRICES.values():
        lines.append(f"| {price.what} | {price.usd} | {price.per} |")
    return "\n".join(lines)


BEGIN = "<!-- bench:begin (generated by make bench; edit outside these markers) -->"
END = "<!-- bench:end -->"
HEAD = """# Benchmarks

What the engine costs per event, against the straightforward per-event implementation, measured by
`make bench` (issue #7). Counts come from botocore event hooks on every client the real handler
builds; timings are ratios against a reference measured in the same run, so neither depends on how
loaded the machine is.
"""


def _scaled_names(document: Mapping[str, Any]) -> list[str]:
    return list(document.get("scaled", {}))


SCENARIOS = """\
Canonical scenario: 100 users x 10 `greenbutton` events (metric `clicks` = 1), shuffled with a fixed
seed, delivered as 10 Kinesis batches of 100 to the real handler (`src/aggregator/app.py`,
in-process, starting cold) against moto, with one aggregate rule (count greater 5, reset no) and the
deployed settings (raw event archive on). The scaled scenarios keep the 100 users and the batches of
100 and multiply the events per user by 10 and 100. The baseline runs the same batches against the
same moto in the same process. `baseline.*` keys are the baseline's twins of `aggregator.*` keys."""

COST_INTRO = """\
Per 1,000,000 events, from the canonical and 100x runs. Measured lines use the counts above; lines
in italics are models, for what in-process moto cannot show (network latency) or a target this run
did not use (EventBridge). Fixed charges (Kinesis stream-hours, storage, logs) do not grow with
events and are the same for both paths."""

PRICE_NOTE = """\
These are list prices as of {date}. This machine cannot reach the web: they were read from stored
copies of the AWS pricing pages and of third-party copies of them, not fetched live. Check them
before quoting these dollars."""


def _counted(document: Mapping[str, Any]) -> list[str]:
    details = document["details"]
    agg, base = details["canonical"]["aggregator"], details["canonical"]["baseline"]
    cpu, imp = details["cpu"], details["import"]
    slowest = ", ".join(f"`{name}` {fmt(ms)}" for name, ms in imp["slowest_imports_ms"].items())
    lines = [
        f"- Aggregator, canonical: {agg['calls']} round trips for {agg['events']:,} events "
        f"({_ops(agg['round_trips'])}); {agg['items_written']} items written, {agg['write_units']} write "
        f"units. It read the ruleset pointer {agg['container_reads']} time: once per container, then at "
        "most once a minute, whatever the traffic, so it is not counted per event (it is billed below).",
        f"- Baseline, canonical: {base['calls']:,} round trips ({_ops(base['round_trips'])}); "
        f"{base['item_reads']:,} items read; {base['write_units']:,} write units.",
        f"- CPU: {fmt(cpu['ours_us_per_record'])} us per record for `decode_record` plus "
        "`Aggregator.process` with in-memory adapters, against "
        f"{fmt(cpu['decode_us_per_record'])} us for a bare `json.loads(base64.b64decode(data))` "
        f"(medians of {cpu['repeats']} alternating repeats over the canonical records).",
        f"- Import: `import aggregator.app` {fmt(imp['handler_ms'])} ms of CPU against `import boto3` "
        f"{fmt(imp['boto3_ms'])} ms (medians of {imp['samples']} fresh interpreters each, Lambda-like "
        f"environment; the wall-clock ratio was {fmt(imp['wall_ratio'])}). Slowest direct imports of the "
        f"handler, cumulative wall ms from `-X importtime`: {slowest}.",
    ]
    cold = imp.get("cold_start")
    if cold:
        lines.append(
            f"- Cold start: a new container's first invocation (canonical batch, moto) took "
            f"{fmt(cold['first_invocation_ms'])} ms of CPU against {fmt(cold['warm_invocation_ms'])} ms "
            f"for a warm one: {fmt(cold['first_invocation_extra_ms'])} ms more (building the runtime: "
            f"boto3's session and clients, the ruleset read, what the import leaves to a batch); with the "
            f"import, {fmt(cold['cold_start_ms'])} ms (medians of {cold['samples']} fresh interpreters)."
        )
    lines += _filter_lines(details.get("filters"))
    evaluator = details.get("evaluator", {})
    if evaluator.get("available"):
        first, rerun = evaluator["first_run"], evaluator["rerun"]
        lines.append(
            f"- Evaluator ({evaluator['users']} users x {evaluator['days']} days x "
            f"{evaluator['events_per_day']} events, rule published on day 10): the first run read "
            f"{first['item_reads']} items ({_ops(first['item_reads_by_table'])}), backfilled the "
            f"{first['summary']['backfill_events']:,} archived events, marked "
            f"{evaluator['users_marked_ready']} users ready and made {first['calls']} calls "
            f"({_ops(first['round_trips'])}); the rerun an hour later read {rerun['item_reads']} items and "
            f"made {rerun['calls']} calls ({_ops(rerun['round_trips'])})."
        )
    else:
        lines.append("- Evaluator: not yet available in this checkout.")
    sampling = document["meta"].get("baseline_sampling", {})
    if sampling:
        lines.append(
            "- Scaled baselines: " + "; ".join(f"{name}: {how}" for name, how in sampling.items()) + "."
        )
    return lines


def _filter_lines(found: Mapping[str, Any] | None) -> list[str]:
    if not found:
        return []
    timings = "; ".join(f"{name}: {fmt(us)} us" for name, us in found["cpu_us_per_record"].items())
    return [
        f"- Filter: one rule with the three-clause filter `{found['filter']}`, which every event passes, "
        f"wrote {fmt(found['write_units_per_event'])} write units per event against "
        f"{fmt(found['unfiltered_write_units_per_event'])} without it. CPU per record, same method as "
        f"above: {timings}. With {found['live_rules']} rules every event feeds {found['live_rules']} "
        "counters; the filters' own share is the difference between the rows with and without them."
    ]


def generated_section(document: Mapping[str, Any], costs: Mapping[str, Sequence[CostLine]]) -> str:
    """``costs`` maps a column name (``Aggregator (canonical)``, ``Baseline (100x)``...) to its lines."""
    meta = document["meta"]
    scaled = document.get("scaled", {})
    missed = shortfalls(document, scaled)
    for name in _cost_scenarios(costs):
        verdict_text = cost_verdict(costs, name)
        if " costs more " in verdict_text:
            missed.append(f"Cost. {verdict_text}")
    parts = [
        BEGIN,
        f"Run on **{meta['date']}** with `{meta['command']}` ({meta['machine']}, Python {meta['python']}, "
        f"{meta['seconds']} s). Raw figures: `bench/results.json`.",
        "",
        "## Figures and targets",
        "",
        SCENARIOS,
        "",
        figures_table(document, scaled),
        "",
        "## Against the 2021 original and the naive baseline",
        "",
        original_row(costs, document),
        "",
        "## The state path's targets (issue #11), measured in this run",
        "",
        state_path_table(document, costs),
        "",
        FLOOR_NOTE,
        "",
        floor_table(document),
        "",
        THROUGHPUT.format(**_throughput(document)),
        "",
    ]
    if missed:
        parts += ["**Where we fall short:**", "", *(f"- {m}" for m in missed), ""]
    else:
        parts += ["Every target is met.", ""]
    parts += ["## What was counted", "", *_counted(document), ""]
    parts += scale_section(document.get("details", {}).get("evaluator_scale"))
    parts += backfill_section(document.get("details", {}).get("backfill_paths", []))
    parts += [
        "## Cost model (USD per million events, aggregator path)",
        "",
        COST_INTRO,
        "",
        cost_table(costs),
        "",
        *(f"- {cost_verdict(costs, name)}" for name in _cost_scenarios(costs)),
        "",
        prices_table(),
        "",
        PRICE_NOTE.format(date=PRICES_AS_OF),
        END,
    ]
    return "\n".join(parts)


THROUGHPUT = """\
Records per second for one invocation, against one Kinesis shard's limit of 1,000 records per
second (it replaces the CPU ratio's target; the ratio is still measured above): modelled as
1 / (CPU per record with in-memory adapters + calls per event x 5 ms, each call one round trip:
a BatchExecuteStatement of up to 25 conditional writes, a send or an archive PUT).
Canonical: {canonical}; sessions, quiet: {quiet}; sessions, busy shard: {busy}.
Peak RSS of an aggregator invocation with the state cache full at the capacity it sizes from the
function's memory ({capacity} states): {rss} MB of {function_mb} MB."""


def _throughput(document: Mapping[str, Any]) -> dict[str, str]:
    details = document["details"]
    rates = details.get("throughput", {})
    rss = details.get("memory", {})
    return {
        "canonical": fmt(rates.get("canonical")),
        "quiet": fmt(rates.get("sessions-quiet")),
        "busy": fmt(rates.get("sessions-busy")),
        "capacity": f"{int(rss.get('cache_capacity', 0)):,}",
        "rss": fmt(rss.get("peak_rss_mb")),
        "function_mb": fmt(rss.get("function_mb")),
    }


SCALE_INTRO = """One series, one rolling rule ("at least 3 events in the last 30 days"), users with 1 to 8
active days in the 30 days before the run (`bench/evaluator_scale.py`). The rollups are written as the
aggregator leaves them (value sent, due moment); the project's own adapters run over an in-memory
DynamoDB stand-in that bills like the meter and ends Query pages at 1 MB (at 1,000 users moto gives
the same counts; at 100,000 moto takes minutes per run). *Items read* counts every DynamoDB item a
run reads: the rollups, the keys-only `due` index entries that name them, and the coverage items.
The backfill columns are modelled (100 bytes per archived event, 110 per result row), not run."""


def scale_section(scale: Mapping[str, Any] | None) -> list[str]:
    if not scale:
        return []
    lines = [
        "## The evaluator at scale (issue #12)",
        "",
        SCALE_INTRO,
        "",
        "| Users | Due users | Next day: rollups (items) read | Idle: rollups (items) read "
        "| Idle rerun: rollups (items) read | Units | Most rollups in a unit (bound) "
        "| Sweep unit: rollups, peak memory | Backfill input: in-Lambda / Athena result "
        "| Backfill, one part: units, most result rows / rollups in a unit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in scale["sizes"]:
        lines.append(
            f"| {r['users']:,} | {r['due_users']:,} | {r['due_rollups_read']:,} ({r['due_items_read']:,}) | "
            f"{r['idle_rollups_read']} ({r['idle_items_read']}) | "
            f"{r['idle_rerun_rollups_read']} ({r['idle_rerun_items_read']}) | {r['units']} | "
            f"{r['most_unit_rollups']:,} ({r['unit_bound']:,}) | "
            f"{r['sweep_unit_rollups']:,}, {r['sweep_unit_peak_kib']:,} KiB | "
            f"{r['backfill_in_lambda_bytes']:,} B / {r['backfill_athena_result_bytes']:,} B | "
            f"{r.get('backfill_part_units', 0)}, {r.get('backfill_unit_most_rows', 0):,} / "
            f"{r.get('backfill_unit_most_rollups', 0):,} |"
        )
    realtime = scale["realtime"]
    lines += [
        "",
        f"Real-time path with the same rule ({realtime['rollup_writes']:,} rollup writes): "
        f"{realtime['write_units']:,} write units, of which {realtime['due_index_write_units']:,} for the "
        "`due` index (a write that keeps the due moment writes nothing there).",
        "",
        "Extrapolated to 10 million users on 256 partitions (`RollupPartitions`), the default bound, one "
        "invocation per unit in a Step Functions Map plus the plan and the finish; dollars are DynamoDB, "
        "Lambda (1,024 MB, 5 ms per round trip and 1 ms per rollup) and state transitions:",
        "",
        "| Run | Rollups read | Units | Invocations | Most rollups in a unit | Dollars per run |",
        "|---|---|---|---|---|---|",
    ]
    for e in scale["extrapolation"]:
        lines.append(
            f"| {e['run']} | {e['rollups_read']:,} | {e['units']:,} | {e['invocations']:,} | "
            f"{e['most_unit_rollups']:,} | ${e['usd']:,.2f} |"
        )
    b = scale["backfill_extrapolation"]
    lines += [
        "",
        f"Backfill of {b['events']:,} archived events ({b['archive_objects']:,} objects): in-Lambda the "
        f"evaluator would read {b['in_lambda_bytes_into_the_evaluator']:,} bytes itself "
        f"(${b['in_lambda_usd_gets']:,.2f} of GETs, far past 15 minutes); on Athena the engine scans "
        f"them (${b['athena_usd']:,.2f}) and the "
        f"evaluator reads {b['athena_result_bytes_into_the_evaluator']:,} bytes of result rows.",
        "",
    ]
    return lines


BACKFILL_INTRO = """One count series backfilled from an archive of 100 users' events over ten days (one object
per batch of 100, every 20th batch archived again as a partial redelivery), by both paths
(`bench/backfill_paths.py`). In-Lambda, the evaluator GETs and decodes every object of the window
itself; on Athena (DuckDB runs the same SQL here) the engine scans them and the evaluator reads one
result row per (series, user), plus one row of counts. Both find the same histories."""


def backfill_section(rows: Sequence[Mapping[str, int]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "## Backfill: in-Lambda against Athena",
        "",
        BACKFILL_INTRO,
        "",
        "| Archived events | Archive objects (bytes) | In-Lambda: GET / List requests "
        "| In-Lambda: bytes read, lines decoded | Athena: queries, objects (bytes) scanned "
        "| Athena: result rows (gzip bytes) the evaluator reads | Evaluator invocations | Same histories |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['events']:,} | {r['archive_objects']:,} ({r['archive_bytes']:,}) | "
            f"{r['in_lambda_get_requests']:,} / {r['in_lambda_list_requests']:,} | "
            f"{r['in_lambda_bytes_read']:,}, {r['in_lambda_events_decoded']:,} | "
            f"{r['athena_queries']}, {r['athena_objects_scanned']:,} ({r['athena_bytes_scanned']:,}) | "
            f"{r['athena_result_rows']:,} ({r['athena_result_bytes']:,}) | {r['evaluator_invocations']} | "
            f"{'yes' if r['identical'] else '**no**'} |"
        )
    lines += [
        "",
        "The in-Lambda column grows with the archive (one GET per archived batch, every line decoded); the "
        "evaluator's share of the Athena path grows with users, not events. Extrapolated to 1 billion "
        "events in docs/SCALE.md.",
        "",
    ]
    return lines


def _cost_scenarios(costs: Mapping[str, Sequence[CostLine]]) -> list[str]:
    return [name[len("Aggregator (") : -1] for name in costs if name.startswith("Aggregator (")]


def _ops(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} {name}" for name, n in counts.items())


def benchmarks_markdown(
    document: Mapping[str, Any], costs: Mapping[str, Sequence[CostLine]], previous: str = ""
) -> str:
    """The whole file: the generated section replaced, hand-written notes around it kept."""
    section = generated_section(document, costs)
    if BEGIN in previous and END in previous:
        before, _, rest = previous.partition(BEGIN)
        _, _, after = rest.partition(END)
        return before + section + after
    return HEAD + "\n" + section + "\n"
