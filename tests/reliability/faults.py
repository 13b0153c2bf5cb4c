"""Faults injected into real botocore clients, so every request still goes through botocore's own
validation, serialisation and retry logic, and DynamoDB's side is moto's real behaviour.

Where each fault sits in botocore's pipeline matters:
- ``before-call`` handlers can answer a call instead of sending it (``emit_until_response``), which
  is how a throttle that never reached the table is injected. The Pinpoint recorder answers on
  ``before-call.pinpoint.*``, so hooks that must see its calls register first on that same name;
- ``before-send`` handlers are *all* called (``emit``), and moto answers there too, so returning an
  error from one does not stop moto from applying the write. :class:`LandThenTimeout` uses that on
  purpose: it lets moto apply the request, checks the write is really stored, then raises the read
  timeout that makes botocore send the same request again;
- ``after-call`` sees the outcome of the whole call (after botocore's retries), which is where a
  crash "after the k-th write landed" belongs.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ReadTimeoutError
from moto.core.models import DEFAULT_ACCOUNT_ID, botocore_stubber
from moto.dynamodb.models import dynamodb_backends

from pia_cli.partiql_batches import execute, parse_write
from pia_cli.recorder import error_response, success_response

WRITES = frozenset(
    {
        "TransactWriteItems",
        "BatchWriteItem",
        "BatchExecuteStatement",
        "UpdateItem",
        "PutItem",
        "DeleteItem",
        "UpdateEndpointsBatch",
        "PutEvents",
    }
)
TARGET_CALLS = frozenset({"UpdateEndpointsBatch", "PutEvents"})
BODY = "pia_reliability_body"


class ProcessKilled(SystemExit):
    """The Lambda container died (timeout, out of memory, host failure) at this exact point."""


def _body(params: dict[str, Any]) -> dict[str, Any]:
    raw = params.get("body") or b"{}"
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)  # type: ignore[no-any-return]


def _stash_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[BODY] = params.get("body")


Triple = tuple[str, str, str]


@dataclass
class Crash:
    """Kills the invocation right after its k-th write call returned (k = 0: before the first).

    Writes are DynamoDB writes and the calls that hand actions to a target. ``outbox`` lists the
    actions (as JSON documents) whose outbox entries still exist. At each kill, the actions this
    invocation got accepted by Pinpoint and whose entry is still there are counted in ``window``
    (events, by action id) and ``attribute_window`` (user, attribute, value): a later run resends
    them, with the same id. That is the one window ARCHITECTURE.md documents; every other resend is
    a bug.
    """

    outbox: Callable[[], list[dict[str, Any]]] = list
    at: int | None = None
    writes: int = 0
    crashes: int = 0
    window: Counter[str] = field(default_factory=Counter)
    attribute_window: Counter[Triple] = field(default_factory=Counter)
    history: list[str] = field(default_factory=list)
    _events: set[str] = field(default_factory=set)
    _attributes: set[Triple] = field(default_factory=set)

    def arm(self, at: int | None) -> None:
        self.at, self.writes = at, 0
        self._events, self._attributes = set(), set()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_first(f"before-call.{service}.*", self._before)
        client.meta.events.register_first(f"before-call.{service}.*", _stash_body)
        client.meta.events.register(f"after-call.{service}", self._after)

    def _kill(self, where: str) -> None:
        self.at = None
        self.crashes += 1
        self.history.append(where)
        if self._events or self._attributes:
            pending = self.outbox()
            self.window.update(self._events & {a["action_id"] for a in pending})
            self.attribute_window.update(
                self._attributes & {(a["user_id"], a["output_name"], a["value"]) for a in pending}
            )
        raise ProcessKilled(f"process killed {where}")

    def _before(self, model: Any, **_: Any) -> None:
        if model.name in WRITES and self.at == 0:
            self._kill(f"before the first write ({model.name})")

    def _after(self, http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name not in WRITES:
            return
        accepted = http_response.status_code < 300
        if accepted and model.name in TARGET_CALLS and context.get(BODY):
            body = _body({"body": context[BODY]})
            if model.name == "PutEvents":
                for batch in body["BatchItem"].values():
                    self._events.update(batch["Events"])
            else:
                self._attributes.update(attribute_triples(body))
        if self.at is None:
            return
        self.writes += 1
        if self.writes == self.at:
            self._kill(f"after write {self.writes} ({model.name}, {'accepted' if accepted else 'refused'})")


def attribute_triples(body: dict[str, Any]) -> set[Triple]:
    """(user, attribute, value) of an UpdateEndpointsBatch request."""
    return {
        (item["User"]["UserId"], name, values[0] if values else "")
        for item in body["Item"]
        for name, values in item.get("User", {}).get("UserAttributes", {}).items()
    }


@dataclass
class AttributeSends:
    """Every (user, attribute, value) Pinpoint accepted, as often as it was sent."""

    sent: Counter[Triple] = field(default_factory=Counter)

    def attach(self, client: Any) -> None:
        client.meta.events.register_first("before-call.pinpoint.*", _stash_body)
        client.meta.events.register("after-call.pinpoint.UpdateEndpointsBatch", self._after)

    def _after(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code < 300 and context.get(BODY):
            self.sent.update(attribute_triples(_body({"body": context[BODY]})))


@dataclass
class Throttle:
    """DynamoDB refusing a share of calls as over capacity, before they touch the table.

    A refused TransactWriteItems comes back either as ProvisionedThroughputExceededException or as
    a cancelled transaction whose items carry ThrottlingError, both of which DynamoDB returns. A
    BatchExecuteStatement is refused whole, or (half the time) runs with some of its statements
    answered ``ThrottlingError`` and the others applied, as DynamoDB answers per statement.
    """

    rng: random.Random
    rate: float = 0.0
    operations: frozenset[str] = frozenset(
        {"PutItem", "BatchWriteItem", "BatchExecuteStatement", "UpdateItem", "Query", "GetItem"}
    )
    injected: Counter[str] = field(default_factory=Counter)
    region: str = "us-east-1"

    def attach(self, client: Any) -> None:
        self.region = client.meta.region_name
        client.meta.events.register_first("before-call.dynamodb.*", self._before)

    def _some_statements(self, params: dict[str, Any], context: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        context[BODY] = params.get("body")
        statements = _body(params)["Statements"]
        refused = set(self.rng.sample(range(len(statements)), k=max(1, len(statements) // 3)))
        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][self.region]
        answers = [
            {"Error": {"Code": "ThrottlingError", "Message": "Throughput exceeds the limit"}}
            if index in refused
            else execute(backend, statement)
            for index, statement in enumerate(statements)
        ]
        return success_response({"Responses": answers})

    def _before(
        self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> tuple[Any, dict[str, Any]] | None:
        if model.name not in self.operations or self.rng.random() >= self.rate:
            return None
        self.injected[model.name] += 1
        if model.name == "BatchExecuteStatement" and self.rng.random() < 0.5:
            return self._some_statements(params, context)
        if model.name == "TransactWriteItems" and self.rng.random() < 0.5:
            items = _body(params)["TransactItems"]
            reasons = [{"Code": "None"} for _ in items]
            for index in self.rng.sample(range(len(items)), k=max(1, len(items) // 3)):
                reasons[index] = {"Code": "ThrottlingError", "Message": "Throughput exceeds the limit"}
            return error_response(
                400,
                "TransactionCanceledException",
                "Transaction cancelled, please refer cancellation reasons for specific reasons",
                CancellationReasons=reasons,
            )
        return error_response(
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        )


@dataclass
class LandThenTimeout:
    """The server applies a write, the response is lost, and botocore retries the same request.

    ``verify`` reads the table with an independent client and returns whether the first attempt's
    write is really stored; a timeout is only injected after that proof. moto ignores
    ``ClientRequestToken``, so a resent transaction would always be re-applied (and fail its version
    condition); DynamoDB instead answers a resend with the same token as it answered the first. Half
    the resent transactions get DynamoDB's answer, half moto's, so both paths are exercised.
    """

    rng: random.Random
    verify: Callable[[str, dict[str, Any]], bool]
    rate: float = 0.0
    operations: frozenset[str] = frozenset({"PutItem", "BatchWriteItem", "BatchExecuteStatement"})
    injected: Counter[str] = field(default_factory=Counter)
    unproven: int = 0
    resent: Counter[str] = field(default_factory=Counter)
    _pending: dict[bytes, tuple[str, Any]] = field(default_factory=dict)

    def attach(self, client: Any) -> None:
        client.meta.events.register_first("before-send.dynamodb", self._before_send)

    def _before_send(self, request: Any, event_name: str, **kwargs: Any) -> Any:
        operation = event_name.rsplit(".", 1)[-1]
        body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
        if body in self._pending:
            _, first = self._pending.pop(body)
            if operation == "TransactWriteItems" and self.rng.random() < 0.5:
                self.resent["idempotent"] += 1
                return first
            self.resent["reapplied"] += 1
            return None
        if operation not in self.operations or self.rng.random() >= self.rate:
            return None
        response = botocore_stubber(event_name=event_name, request=request, **kwargs)
        if response is None or response.status_code != 200:
            return response
        if not self.verify(operation, json.loads(body)):
            self.unproven += 1
            return response
        self.injected[operation] += 1
        self._pending[body] = (operation, response)
        raise ReadTimeoutError(endpoint_url=request.url)


@dataclass(frozen=True)
class CounterCommit:
    rule_id: str
    user_id: str
    version: int
    marks: dict[str, int]


@dataclass
class CommitLog:
    """Every counter version DynamoDB accepted, in commit order, read off the successful conditional
    PutItem requests: the order the engine actually applied events in."""

    commits: list[CounterCommit] = field(default_factory=list)
    conflicts: int = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register_first("before-call.dynamodb.PutItem", _stash_body)
        client.meta.events.register("after-call.dynamodb.PutItem", self._after)
        client.meta.events.register_first("before-call.dynamodb.BatchExecuteStatement", _stash_body)
        client.meta.events.register("after-call.dynamodb.BatchExecuteStatement", self._after_batch)

    def _after_batch(
        self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        if http_response.status_code >= 300:
            return
        statements = _body({"body": context[BODY]})["Statements"]
        for statement, answer in zip(statements, parsed.get("Responses", []), strict=True):
            if answer.get("Error"):
                self.conflicts += answer["Error"].get("Code") in ("ConditionalCheckFailed", "DuplicateItem")
                continue
            write = parse_write(statement["Statement"], statement.get("Parameters", []))
            self._record({**(write.where or {}), **write.values})

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            self.conflicts += parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
            return
        self._record(_body({"body": context[BODY]})["Item"])

    def _record(self, item: dict[str, Any]) -> None:
        if not item["pk"]["S"].startswith("R#"):
            return
        marks = {lane: int(raw["S"].split(":", 1)[0]) for lane, raw in item["ln"]["M"].items()}
        self.commits.append(CounterCommit(item["rid"]["S"], item["sk"]["S"], int(item["v"]["N"]), marks))
