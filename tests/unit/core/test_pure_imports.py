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
    "pia.rules.table",
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


NOT_AT_COLD_START = (
    "pia.timeseries",
    "pia.rules.filters",
    "pia.rules.table",
    "pia.rules.sheets",
    "pia.rules.honeycode",
    "pia.rules.poller",
    "pia.targets.relay",
    "pia.targets.pinpoint",
    "pia.targets.eventbridge",
    "pia.targets.customer_profiles",
    "pandas",
    "numpy",
    "openpyxl",
    "sqlglot",
    "duckdb",
    "pydantic",
)
"""What the aggregator must not load at cold start while no date rule is live: the time-series path
and its backfill engines serve date rules only, the filter language only filtered rules (loaded with
the first ruleset that has one), the rule table's parser only the poller (the aggregator reads
compiled rules), the rule sources and the relay other functions, and each target
only when configured (built with the runtime, on the first batch)."""

LAMBDA_LIKE = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "pia-aggregator",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "pia",
    "PATH": "",
}


def test_the_aggregator_cold_start_loads_nothing_only_date_rules_filters_or_other_functions_use() -> None:
    """With the deployed environment (Tracer live, as with ``Tracing: Active``), so a later change
    that re-adds one of these imports fails here instead of quietly slowing every cold start."""
    probe = (
        "import json, sys; sys.path.insert(0, 'src'); import aggregator.app; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted({n.split('.')[0] for n in NOT_AT_COLD_START})!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=LAMBDA_LIKE
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert [m for m in loaded if m.startswith(NOT_AT_COLD_START)] == []
