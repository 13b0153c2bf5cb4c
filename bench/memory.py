"""Peak RSS of one aggregator invocation with its state cache full, against the function's memory.

Measured in a fresh interpreter (``python -m bench.memory_probe``), so nothing else this process
loaded counts: it imports the handler, fills the one state cache to the capacity it sizes from the
function's memory with counters and rollups shaped like the busiest ones (lane marks, endpoints,
recent event ids, one owed action), runs one batch of the canonical scenario through the aggregator
with in-memory fakes, and reports ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_MEMORY_MB = 512
"""template.yaml Globals: MemorySize."""


@dataclass(frozen=True)
class Memory:
    function_mb: int
    capacity: int
    peak_rss_mb: float
    cached: int

    def to_json(self) -> dict[str, float]:
        return {
            "function_mb": self.function_mb,
            "cache_capacity": self.capacity,
            "states_cached": self.cached,
            "peak_rss_mb": self.peak_rss_mb,
            "share_of_function_memory": self.peak_rss_mb / self.function_mb,
        }


def measure(memory_mb: int = FUNCTION_MEMORY_MB) -> Memory:
    env = {**os.environ, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory_probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Memory(memory_mb, data["capacity"], data["peak_rss_mb"], data["cached"])
