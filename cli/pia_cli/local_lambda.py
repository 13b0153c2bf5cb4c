"""A function of this repository (``src/<name>/app.py``) run in-process, the way Lambda would run it.

Local runs call the real handlers with their deployed environment and a Lambda context. Each
handler module keeps its runtime in a :class:`pia.aws.wiring.Container` built from a wiring (the
clients and the clock); this is the one place that wires it for a local run:

- clients come from :class:`pia_cli.local_clients.LocalClients`: stand-ins for services the
  emulator lacks, the function's IAM role and AWS's request limits enforced, every call counted;
- the clock follows the run's clock when one is given (``pia replay --now``).

The container starts cold on entry and is put back, cold, on exit, so nothing wired stays behind.
Powertools writes logs and metrics to stdout; here they go to ``log_stream``, so a command whose
stdout is a JSON document keeps it clean.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from pia.aws.wiring import Container, Wiring
from pia_cli.calls import AwsCallCounter
from pia_cli.environment import scoped_environment
from pia_cli.local_clients import ClientOverride, LocalClients
from pia_cli.request_checks import RequestCheck
from pia_cli.service_limits import ServiceLimits

SRC = Path(__file__).resolve().parents[2] / "src"
POWERTOOLS_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": "pia-local",
    "POWERTOOLS_METRICS_NAMESPACE": "PinpointIncrementalAnalytics",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


class LocalRunError(RuntimeError):
    """A function cannot be run locally as asked."""


def prepare_process() -> None:
    """Powertools reads its settings when first imported: set the local defaults before that."""
    for name, value in POWERTOOLS_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))


def handler_module(source: str) -> ModuleType:
    if not (SRC / source / "app.py").is_file():
        raise LocalRunError(
            f"src/{source}/app.py not found (pia's local commands run from a repository checkout)"
        )
    prepare_process()
    return importlib.import_module(f"{source}.app")


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


class LocalFunction:
    def __init__(
        self,
        source: str,
        *,
        environment: Mapping[str, str],
        name: str | None = None,
        arn: str | None = None,
        timeout: int = 60,
        memory: int = 512,
        overrides: Mapping[str, ClientOverride] | None = None,
        counter: AwsCallCounter | None = None,
        clock: Callable[[], datetime] | None = None,
        checks: Sequence[RequestCheck] | None = None,
        log_stream: TextIO | None = None,
        log_level: str | None = None,
    ) -> None:
        self.source = source
        self.name = name or source
        self.arn = arn or f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}"
        self.environment = dict(environment)
        self.timeout = timeout
        self.memory = memory
        self._overrides = dict(overrides or {})
        self._counter = counter
        self._clock = clock
        self._checks: Sequence[RequestCheck] = (ServiceLimits(),) if checks is None else checks
        self._exit = ExitStack()
        self._wiring: Any = None
        self._log_stream = log_stream or sys.stderr
        self._log_level = log_level
        self._module: ModuleType | None = None
        self._saved_level: int | None = None
        self.invocations = 0

    def __enter__(self) -> LocalFunction:
        module = handler_module(self.source)
        container = getattr(module, "container", None)
        if not isinstance(container, Container):
            raise LocalRunError(
                f"src/{self.source}/app.py has no container (pia.aws.wiring.Container) to wire"
            )
        clients = LocalClients(
            self.name,
            base=container.wiring.clients,
            overrides=self._overrides,
            checks=self._checks,
            counter=self._counter,
        )
        self._wiring = self._exit.enter_context(
            container.wired(Wiring(clients, self._clock or container.wiring.clock))
        )
        logger = getattr(module, "logger", None)
        if self._log_level is not None and logger is not None:
            self._saved_level = logger.log_level
            logger.setLevel(self._log_level)
        self._module = module
        return self

    def __exit__(self, *exc: object) -> None:
        module = self._module
        if module is None:
            return
        self._exit.close()
        if self._saved_level is not None:
            module.logger.setLevel(self._saved_level)
            self._saved_level = None
        self._module = None

    def invoke(self, event: Mapping[str, Any]) -> Any:
        """Call the handler as Lambda would: its environment set, a fresh context, logs captured."""
        if self._module is None:
            raise LocalRunError(f"{self.name}: use the function inside a with block")
        context = LambdaContext(
            function_name=self.name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.memory,
            timeout_seconds=self.timeout,
            log_group_name=f"/aws/lambda/{self.name}",
        )
        self.invocations += 1
        with (
            scoped_environment(self.environment),
            redirect_stdout(self._log_stream),
            _logs_to(self._module, self._log_stream),
        ):
            return self._module.lambda_handler(dict(event), context)


@contextmanager
def _logs_to(module: ModuleType, stream: TextIO) -> Iterator[None]:
    """Powertools' logger keeps the stdout it saw at import (which may be closed since); point it
    at the run's log stream for the invocation. The handler's stream is swapped, not ``setStream``:
    that would flush the old one first."""
    handler = getattr(getattr(module, "logger", None), "registered_handler", None)
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.stream
    handler.stream = stream
    try:
        yield
    finally:
        handler.stream = previous
