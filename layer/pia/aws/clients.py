"""Where a function's AWS clients come from: one factory type that Lambda, local runs and tests share.

In Lambda the factory is :class:`AwsClients` (boto3 with the house SDK settings). Local runs and
tests hand the same handlers another factory of the same type (stand-ins for services the emulator
lacks, call counting, IAM and service-limit checks), so nothing is patched into a handler module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from botocore.config import Config

SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
"""Standard retries, and timeouts well inside the functions' own: a stuck call is retried, not waited out."""


class ClientFactory(Protocol):
    def __call__(self, service: str, region_name: str | None = None) -> Any:
        """A boto3-compatible client for ``service`` (in ``region_name``, else the function's region)."""
        ...


ShippedModel = Callable[[Config], Any]
"""Makes a client for a service whose botocore model ships with the layer (Honeycode)."""


@dataclass(frozen=True)
class AwsClients:
    """Lambda's clients, from boto3's default session (so anything watching that session sees them).

    One client per service and region for the container's life: a client costs a cold start tens of
    milliseconds of CPU even when its service model is already loaded (a second DynamoDB client about
    35 ms, ``make bench``'s cold-start figures), and boto3 clients are safe to share."""

    config: Config = SDK_CONFIG
    shipped: Mapping[str, ShippedModel] = field(default_factory=dict)
    _made: dict[tuple[str, str | None], Any] = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, service: str, region_name: str | None = None) -> Any:
        made = self._made.get((service, region_name))
        if made is None:
            if service in self.shipped:
                made = self.shipped[service](self.config)
            else:
                made = boto3.client(service, region_name=region_name, config=self.config)  # type: ignore[call-overload]
            self._made[(service, region_name)] = made
        return made
