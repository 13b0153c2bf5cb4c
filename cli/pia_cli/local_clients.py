"""A function's AWS clients in local runs: the Lambda factory's clients, made stricter.

Every local run (the demo, ``pia replay``, the bench, the reliability suite and the integration
tests) gives a handler a :class:`LocalClients` through its container's wiring. On top of what the
function would get in Lambda it:

- answers services the emulator lacks (Pinpoint, Customer Profiles) with stand-ins;
- checks each call against the function's IAM role, when one is given (:mod:`pia_cli.iam`);
- rejects what AWS rejects and moto lets through (:mod:`pia_cli.service_limits`);
- counts every call per caller (:mod:`pia_cli.calls`).

The checks answer before any stand-in or the emulator sees the request, as AWS authorizes and
validates before it acts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pia.aws.clients import AwsClients, ClientFactory
from pia_cli.calls import AwsCallCounter
from pia_cli.request_checks import RequestCheck, check_first
from pia_cli.service_limits import ServiceLimits

ClientOverride = Callable[[str | None], Any]


@dataclass
class LocalClients:
    caller: str
    base: ClientFactory = field(default_factory=AwsClients)
    overrides: Mapping[str, ClientOverride] = field(default_factory=dict)
    checks: Sequence[RequestCheck] = (ServiceLimits(),)
    counter: AwsCallCounter | None = None

    def __call__(self, service: str, region_name: str | None = None) -> Any:
        override = self.overrides.get(service)
        client = (
            override(region_name) if override is not None else self.base(service, region_name=region_name)
        )
        check_first(client, self.checks)
        return self.counter.watch(client, self.caller) if self.counter is not None else client
