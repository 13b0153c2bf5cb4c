"""Fixtures and the end-of-run table for the fault-injection suite (issue #6).

``PIA_RELIABILITY_EXAMPLES`` sets how many runs each scenario makes (``make reliability``: 200;
plain ``make test``: the default below, to stay fast). ``PIA_RELIABILITY_REPORT`` names a file to
write the figures to (``make reliability`` writes docs/RELIABILITY.md).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.endpoint
import pytest

from pia_cli.deploy import deploy as deploy_template
from pia_cli.emulator import one_backup_per_transaction
from pia_cli.iam import TemplateRoles
from pia_cli.local_stack import TEMPLATE
from tests.reliability.deployment import Deployment
from tests.reliability.ledger import ReliabilityLedger

DEFAULT_EXAMPLES = 25
PINPOINT_APP = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
LEDGER = pytest.StashKey[ReliabilityLedger]()
STARTED = pytest.StashKey[float]()


def configured_examples() -> int:
    return max(1, int(os.environ.get("PIA_RELIABILITY_EXAMPLES", DEFAULT_EXAMPLES)))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LEDGER] = ReliabilityLedger()
    config.stash[STARTED] = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    ledger = config.stash.get(LEDGER, None)
    if ledger is None or not ledger.rows or hasattr(config, "workerinput"):
        return
    terminalreporter.write_sep("=", "reliability: faults injected and differences from expected")
    for line in ledger.table():
        terminalreporter.write_line(line)
    target = os.environ.get("PIA_RELIABILITY_REPORT")
    if not target:
        return
    examples = configured_examples()
    command = f"`PIA_RELIABILITY_EXAMPLES={examples} PIA_RELIABILITY_REPORT={target} pytest {' '.join(sys.argv[1:])}`"
    if os.environ.get("MAKELEVEL"):
        command = f"`make reliability`, which runs {command}"
    outcome = "all scenarios passed" if exitstatus == 0 else f"pytest exit status {exitstatus}"
    seconds = time.monotonic() - config.stash[STARTED]
    path = config.rootpath / target
    path.write_text(ledger.document(command, examples, outcome, seconds))
    terminalreporter.write_line(f"figures written to {path}")


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> ReliabilityLedger:
    return request.config.stash[LEDGER]


@pytest.fixture
def examples() -> int:
    return configured_examples()


@pytest.fixture
def botocore_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry backoff, recorded instead of slept (a retried timeout would wait ~1 s)."""
    slept: list[float] = []

    class Clock:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)

    monkeypatch.setattr(botocore.endpoint, "time", Clock())
    return slept


def template_roles() -> TemplateRoles:
    """The functions' roles from template.yaml, deployed once on this test's moto: every run then
    acts under them, pointed at its own tables (``pia_cli.iam``)."""
    parameters = {"PinpointApplicationId": PINPOINT_APP, "ActionTargets": "pinpoint"}
    stack = deploy_template(TEMPLATE, "pia-reliability", parameters)
    return TemplateRoles.of(stack, boto3.client("iam", region_name="us-east-1"))


@pytest.fixture
def deploy(
    aws: None,
    function_env: dict[str, str],
    lambda_context: Any,
    botocore_sleeps: list[float],
) -> Iterator[Callable[..., Deployment]]:
    """``with deploy(rng, **environment) as stack:`` a fresh, isolated stack on moto for one run."""
    from action_relay import app as relay
    from aggregator import app as aggregator

    made: list[Deployment] = []
    fast = one_backup_per_transaction()
    fast.__enter__()
    roles = template_roles()

    def make(rng: random.Random, **environment: str) -> Deployment:
        deployment = Deployment(
            aggregator=aggregator,
            relay=relay,
            context=lambda_context,
            rng=rng,
            environment=environment,
            roles=roles,
        )
        made.append(deployment)
        return deployment

    yield make
    for deployment in made:
        deployment.close()
    fast.__exit__(None, None, None)
