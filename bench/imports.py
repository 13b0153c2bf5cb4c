"""Cold import of the aggregator handler module against ``import boto3`` alone, each in a fresh interpreter.

Each sample is a new ``python -c`` that times only its import statement (interpreter start-up and
``site`` are outside the measurement, and the same for both). The ratio uses CPU time
(``time.process_time``): an import is CPU work on cached files, and wall time on a shared 2-core
machine swings with whatever else runs (wall-clock medians are kept in the details). The two are
interleaved so drift hits both alike, and the medians are compared.

The environment is the deployed one as far as imports are concerned:
- ``LAMBDA_TASK_ROOT`` and ``AWS_LAMBDA_FUNCTION_NAME`` are set, so Powertools' Tracer is live and
  the X-Ray SDK starts in its Lambda mode, as it does with ``Tracing: Active`` in template.yaml;
- ``requests`` is made unimportable: it is in the dev virtualenv (moto needs it) but not in the
  Lambda runtime or our layer, and X-Ray's auto-patching would otherwise import it (about 20 ms).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLER_MODULE = "aggregator.app"
LAMBDA_LIKE = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_NAME": "pia-aggregator",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "pia",
    "POWERTOOLS_METRICS_NAMESPACE": "PinpointIncrementalAnalytics",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


@dataclass(frozen=True)
class ImportRatio:
    ratio: float
    handler_ms: float
    boto3_ms: float
    wall_ratio: float
    handler_wall_ms: float
    boto3_wall_ms: float
    samples: int

    def to_json(self) -> dict[str, float]:
        return {
            "ratio": self.ratio,
            "handler_ms": self.handler_ms,
            "boto3_ms": self.boto3_ms,
            "wall_ratio": self.wall_ratio,
            "handler_wall_ms": self.handler_wall_ms,
            "boto3_wall_ms": self.boto3_wall_ms,
            "samples": self.samples,
        }


NOT_IN_LAMBDA = ("requests",)
BLOCK = f"import sys; sys.modules.update(dict.fromkeys({NOT_IN_LAMBDA!r}))"


def import_seconds(module: str, environment: Mapping[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``import module`` in a fresh interpreter."""
    code = (
        f"{BLOCK}; import time; c, w = time.process_time(), time.perf_counter(); import {module}; "
        "print(time.process_time() - c, time.perf_counter() - w)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(environment),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    cpu, wall = out.stdout.strip().splitlines()[-1].split()
    return float(cpu), float(wall)


def handler_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_LAMBDA", "LAMBDA_"))}
    env.update(LAMBDA_LIKE)
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "layer")])
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(samples: int = 7, extra: Mapping[str, str] | None = None) -> ImportRatio:
    env = handler_environment(extra)
    import_seconds(HANDLER_MODULE, env)
    handler: list[tuple[float, float]] = []
    boto: list[tuple[float, float]] = []
    for _ in range(samples):
        boto.append(import_seconds("boto3", env))
        handler.append(import_seconds(HANDLER_MODULE, env))
    h, b = statistics.median(c for c, _ in handler), statistics.median(c for c, _ in boto)
    hw, bw = statistics.median(w for _, w in handler), statistics.median(w for _, w in boto)
    return ImportRatio(
        ratio=h / b,
        handler_ms=1000 * h,
        boto3_ms=1000 * b,
        wall_ratio=hw / bw,
        handler_wall_ms=1000 * hw,
        boto3_wall_ms=1000 * bw,
        samples=samples,
    )


def profile(environment: Mapping[str, str] | None = None, top: int = 12) -> list[tuple[str, float]]:
    """The handler's slowest imports (``-X importtime`` cumulative ms), for BENCHMARKS.md."""
    env = dict(environment or handler_environment())
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"{BLOCK}; import {HANDLER_MODULE}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    children: list[tuple[str, float]] = []
    for line in out.stderr.splitlines():
        fields = line.split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth == 1:
            children.append((name.strip(), int(fields[1]) / 1000))
        elif depth == 0:
            if name.strip() == HANDLER_MODULE:
                return sorted(children, key=lambda r: -r[1])[:top]
            children = []
    return []


@dataclass(frozen=True)
class ColdStart:
    """A new container's CPU: the handler's import, its first invocation, and a warm one (medians)."""

    import_ms: float
    first_invocation_ms: float
    warm_invocation_ms: float
    samples: int

    @property
    def first_invocation_extra_ms(self) -> float:
        """What the first invocation costs beyond a warm one: building the runtime, and whatever the
        import left to the first batch."""
        return self.first_invocation_ms - self.warm_invocation_ms

    @property
    def cold_start_ms(self) -> float:
        """Import plus the first invocation's extra: what a cold start costs in all."""
        return self.import_ms + self.first_invocation_extra_ms

    def to_json(self) -> dict[str, float]:
        return {
            "import_ms": self.import_ms,
            "first_invocation_ms": self.first_invocation_ms,
            "warm_invocation_ms": self.warm_invocation_ms,
            "first_invocation_extra_ms": self.first_invocation_extra_ms,
            "cold_start_ms": self.cold_start_ms,
            "samples": self.samples,
        }


def first_invocation(samples: int = 5) -> ColdStart:
    """Each sample a fresh interpreter (``python -m bench.cold_start_probe``) with the deployed
    environment and the bench's tables in moto."""
    from bench.world import function_environment  # noqa: PLC0415 (imports moto's world only here)

    env = handler_environment(function_environment())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env["PYTHONPATH"]])
    rows: list[dict[str, float]] = []
    for _ in range(samples):
        done = subprocess.run(
            [sys.executable, "-m", "bench.cold_start_probe"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return ColdStart(
        import_ms=statistics.median(r["import_cpu_ms"] for r in rows),
        first_invocation_ms=statistics.median(r["first_invocation_cpu_ms"] for r in rows),
        warm_invocation_ms=statistics.median(r["warm_invocation_cpu_ms"] for r in rows),
        samples=samples,
    )
