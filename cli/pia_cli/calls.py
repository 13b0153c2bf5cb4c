"""Counts the AWS API calls each local function (and the local tooling) makes, per service and operation.

Cost is a design requirement of this engine, so local runs show what the functions would have
called in AWS. A botocore ``after-call`` hook fires once per API call (after botocore's own retries),
including calls answered in-process by the Pinpoint recorder, which never reach the network.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class AwsCallCounter:
    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def watch(self, client: Any, caller: str) -> Any:
        """Count every call ``client`` makes under ``caller`` (a function name, or the tooling)."""

        def count(model: Any, **_: Any) -> None:
            with self._lock:
                self.calls[(caller, model.service_model.service_name, model.name)] += 1

        client.meta.events.register("after-call", count)
        return client

    def by_service(self, caller: str | None = None) -> Counter[str]:
        totals: Counter[str] = Counter()
        for (who, service, _), n in self.calls.items():
            if caller is None or who == caller:
                totals[service] += n
        return totals

    def by_operation(self, caller: str | None = None) -> Counter[tuple[str, str]]:
        totals: Counter[tuple[str, str]] = Counter()
        for (who, service, operation), n in self.calls.items():
            if caller is None or who == caller:
                totals[(service, operation)] += n
        return totals

    def callers(self) -> list[str]:
        return sorted({who for who, _, _ in self.calls})
