"""Scenario 17: frequency caps (issue #16, item 3) under crashes and redelivery.

Events are spread over hours and days so that cap windows open, fill and close inside one run, in
UTC or in a zone half an hour off it. The model (:mod:`tests.reliability.reference`) applies each
cap one event at a time; the engine must fire exactly the crossings the model fires, hold back
exactly the ones it holds back, and never charge a redelivered crossing twice.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest

from tests.reliability.deployment import Deployment
from tests.reliability.ledger import ReliabilityLedger
from tests.reliability.reference import DAY, EVER, HOUR, CapSpec, RuleSpec
from tests.reliability.test_redelivery import CrashPlan, _drain, _writes_of_a_clean_delivery
from tests.reliability.workload import CATALOG, random_events, reference_for, users

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore:No application metrics")]

CAPPED = (
    *CATALOG,
    RuleSpec("trk_click_2h", "click", count=("greater_or_equal", 1), reset=True, cap=CapSpec(2, HOUR, 3)),
    RuleSpec("trk_course_once", "course", count=("equal", 2), reset=True, cap=CapSpec(1, EVER)),
    RuleSpec(
        "trk_spend_daily",
        "buy",
        total=("greater_or_equal", "3"),
        reset=True,
        metric="amount",
        cap=CapSpec(1, DAY),
    ),
    RuleSpec("trk_view_3d", "view", count=("greater_or_equal", 2), reset=True, cap=CapSpec(2, DAY, 3)),
)
ZONES = ("UTC", "Asia/Kolkata")


def test_caps_fire_exactly_the_model_under_crashes_and_redelivery(
    deploy: Callable[..., Deployment], ledger: ReliabilityLedger, examples: int
) -> None:
    row = ledger.scenario(
        17,
        "Frequency caps under crashes and redelivery",
        "Reset rules with caps (2 per 3 hours, once, 1 per day, 2 per 3 days, in UTC or Asia/Kolkata) "
        "beside the uncapped catalog; events up to 1 minute to 3 hours apart (at most 5 days, all before the clock), so windows open and close "
        "within a run. The process is killed after k of n writes (as in scenario 2), Lambda retries "
        "from the checkpoint, then the whole stream is delivered once more to a cold container. "
        "Checked: count, sum, fires and capped crossings of every counter, and every fired event "
        "delivered once, equal the sequential model.",
    )
    held_back = 0
    for run in range(examples):
        rng = random.Random(f"caps-{run}")
        zone = rng.choice(ZONES)
        spacing = rng.choice((60, 900, 3600, 3 * 3600))
        drafts = random_events(rng, users(rng, most=4), rng.randint(10, 40))
        moments = itertools.accumulate(rng.randint(1, spacing) for _ in drafts)
        events = [dataclasses.replace(e, second=moment) for e, moment in zip(drafts, moments, strict=True)]
        with deploy(rng, TIMEZONE=zone) as dry:
            writes = _writes_of_a_clean_delivery(dry, events, CAPPED)
        with deploy(rng, TIMEZONE=zone) as stack:
            stack.publish(CAPPED)
            stack.create_stream()
            produced = stack.produce(events)
            plan = CrashPlan(stack, rng, writes)
            batch_size = rng.choice((1, 5, len(events)))
            differences = _drain(stack, stack.mapping(stack.invoker(before=plan.arm), batch_size=batch_size))
            stack.current = None
            if stack.invoke(stack.batch(produced))["batchItemFailures"]:
                differences.append("the redelivered stream reported failures")
            stack.drain_outbox()
            model = reference_for(((p.lane, p.sequence, p.event) for p in produced), CAPPED, ZoneInfo(zone))
            held_back += sum(t.capped for t in model.tallies.values())
            outcome = stack.compare(model, CAPPED)
            differences += outcome.differences
            row.record(faults=stack.crash.crashes + 1, differences=differences, resends=outcome.resends)
    assert row.differences == 0, row.verdict()
    assert held_back > 0 or examples < 3, "no run filled a cap: the scenario checks nothing"
