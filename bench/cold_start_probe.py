"""The child process of :func:`bench.imports.first_invocation`: a new container's import and first
batches, each timed in CPU, against moto.

The handler is imported first, with nothing else loaded (as :func:`bench.imports.measure` does),
then moto and the bench's tables are set up untimed, and the canonical scenario's first batch is
the container's first invocation: it builds the runtime (settings, boto3's default session and the
clients, the ruleset read) and loads whatever the handler left to a batch. The next batches are
warm. First minus warm is what a cold start adds to its first invocation; moto answers both alike.
"""

from __future__ import annotations

import sys
import time

sys.modules["requests"] = None  # type: ignore[assignment]  # not in Lambda (bench.imports.NOT_IN_LAMBDA)
_start = time.process_time()
from aggregator import app  # noqa: E402 (the import is what is timed)

IMPORT_CPU = time.process_time() - _start
del sys.modules["requests"]  # moto, set up below, needs it

import json  # noqa: E402
import statistics  # noqa: E402
from typing import Any  # noqa: E402

from bench.scenario import CANONICAL  # noqa: E402
from bench.world import aws_world  # noqa: E402

WARM_BATCHES = 4


class Context:
    function_name = "pia-aggregator"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pia-aggregator"
    aws_request_id = "cold-start-probe"


def timed(batch: dict[str, Any]) -> float:
    start = time.process_time()
    response = app.lambda_handler(batch, Context())
    spent = time.process_time() - start
    if response.get("batchItemFailures"):
        raise AssertionError(f"the probe's batch failed: {response}")
    return spent


def main() -> None:
    batches = list(CANONICAL.batches())
    with aws_world():
        first = timed(batches[0])
        warm = [timed(batch) for batch in batches[1 : 1 + WARM_BATCHES]]
    print(
        json.dumps(
            {
                "import_cpu_ms": 1000 * IMPORT_CPU,
                "first_invocation_cpu_ms": 1000 * first,
                "warm_invocation_cpu_ms": 1000 * statistics.median(warm),
            }
        )
    )


main()
