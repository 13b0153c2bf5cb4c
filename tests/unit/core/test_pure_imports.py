"""The pure modules import no AWS SDK: logic runs (and is tested) without botocore, and a function's
cold start pays only for what it uses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = (
    "pia.core.actions",
    "pia.core.delivery",
    "pia.core.events",
    "pia.core.limits",
    "pia.core.state",
    "pia.rules.model",
    "pia.rules.poller",
    "pia.counting.counters",
    "pia.counting.aggregator",
    "pia.timeseries.rollups",
    "pia.timeseries.realtime",
    "pia.timeseries.backfill",
    "pia.targets.relay",
)


@pytest.mark.parametrize("module", PURE)
def test_importing_a_pure_module_loads_no_botocore(module: str) -> None:
    probe = f"import json, sys, {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith(('botocore', 'boto3')))))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [], f"{module} loads the AWS SDK"


def test_the_aggregator_handler_imports_the_time_series_path_only_when_a_batch_needs_it() -> None:
    probe = (
        "import json, sys; sys.path.insert(0, 'src'); import aggregator.app; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pia.timeseries'))))"
    )
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": ""}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
