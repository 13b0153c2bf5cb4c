"""What a Lambda container keeps between invocations, and what it is built from.

A handler's runtime (settings, adapters, caches) is built once per container, on the first
invocation: the cold start. It is built from a :class:`Wiring`, the clients and the clock, and from
nothing else. Lambda uses the default wiring; ``pia replay``, the demo, the bench and tests pass
theirs through :meth:`Container.wired`, a typed seam instead of attributes replaced on a module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pia.aws.clients import AwsClients, ClientFactory
from pia.core.state import Clock, CommitSettings, StateCache, cache_capacity, system_clock

__all__ = ["Clock", "Container", "Wiring", "system_clock"]


@dataclass(frozen=True)
class Wiring:
    clients: ClientFactory
    clock: Clock = system_clock

    def commit(
        self, lane_retention_seconds: int = CommitSettings.lane_retention_seconds, *, memory_mb: int = 0
    ) -> CommitSettings:
        """The container's one :class:`~pia.core.state.CommitSettings`, on this wiring's clock; with
        ``memory_mb`` (a stream consumer, whose warm container writes without reading) a state cache
        sized from the function's memory."""
        cache = StateCache(cache_capacity(memory_mb)) if memory_mb else None
        return CommitSettings(clock=self.clock, lane_retention_seconds=lane_retention_seconds, cache=cache)


R = TypeVar("R")


class Container(Generic[R]):
    def __init__(self, build: Callable[[Wiring], R], wiring: Wiring | None = None) -> None:
        self._build = build
        self._wiring = wiring or Wiring(AwsClients())
        self._runtime: R | None = None

    @property
    def wiring(self) -> Wiring:
        return self._wiring

    def now(self) -> datetime:
        return self._wiring.clock()

    def runtime(self) -> R:
        """The container's runtime, built on first use."""
        if self._runtime is None:
            self._runtime = self._build(self._wiring)
        return self._runtime

    def build(self) -> R:
        """A runtime from the current wiring that the container does not keep (a second container)."""
        return self._build(self._wiring)

    def cold_start(self) -> None:
        """The next invocation builds everything again, as in a new container."""
        self._runtime = None

    def rewire(self, wiring: Wiring) -> Wiring:
        """From now on run on ``wiring``, starting cold; returns the wiring it replaced."""
        saved = self._wiring
        self._wiring, self._runtime = wiring, None
        return saved

    @contextmanager
    def wired(self, wiring: Wiring) -> Iterator[Container[R]]:
        """Run on ``wiring`` for the block, cold at its start; afterwards as before, cold again."""
        saved = self.rewire(wiring)
        try:
            yield self
        finally:
            self.rewire(saved)

    @contextmanager
    def running(self, runtime: R) -> Iterator[R]:
        """Invoke with a runtime built earlier (by :meth:`build`) for the block: one of several
        containers a test keeps warm side by side."""
        saved = self._runtime
        self._runtime = runtime
        try:
            yield runtime
        finally:
            self._runtime = saved
