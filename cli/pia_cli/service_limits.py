"""Request limits AWS enforces and moto does not, checked on a local function's own calls.

moto 5 already rejects, like DynamoDB: an item over 400 KB (PutItem, UpdateItem, a transaction's
Put), more than 100 items in a transaction, two operations on one item in it, and it pages Query
and Scan at 1 MB; it rejects more than 10 entries in an EventBridge PutEvents. What it lets
through, and AWS does not, is rejected here with the error code AWS answers with:

- DynamoDB: a transaction whose items add up to more than 4 MB; a BatchWriteItem of more than 25
  requests, over 16 MB, or with an item over 400 KB;
- EventBridge: a PutEvents whose entries add up to more than 256 KB (EventBridge's own formula);
- Pinpoint (a local stand-in, so nothing is enforced unless here): more than 100 endpoints in an
  UpdateEndpointsBatch, more than 100 events or 4 MB in a PutEvents, a payload over 7 MB.

Sizes follow the services' documented rules, computed here independently of the engine's own
estimates, so an engine that underestimates is caught rather than agreed with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pia_cli.recorder import error_response
from pia_cli.request_checks import API_PARAMS

KB = 1024
MB = 1024 * KB
DYNAMODB_MAX_ITEM = 400 * KB
DYNAMODB_MAX_TRANSACTION = 4 * MB
DYNAMODB_MAX_BATCH_WRITE = 25
DYNAMODB_MAX_BATCH_WRITE_BYTES = 16 * MB
EVENTBRIDGE_MAX_REQUEST = 256 * KB
EVENTBRIDGE_TIME_BYTES = 14
PINPOINT_MAX_ENDPOINTS = 100
PINPOINT_MAX_EVENTS = 100
PINPOINT_MAX_EVENTS_REQUEST = 4 * MB
PINPOINT_MAX_PAYLOAD = 7 * MB


def attribute_size(value: Mapping[str, Any]) -> int:
    """DynamoDB's size of one attribute value (names are counted by the caller)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode("utf-8"))
    if kind == "B":
        return len(inner)
    if kind == "N":
        return number_size(str(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode("utf-8")) for v in inner)
    if kind == "NS":
        return sum(number_size(str(v)) for v in inner)
    if kind == "BS":
        return sum(len(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + attribute_size(v) for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def number_size(text: str) -> int:
    """One byte per two significant digits, plus one."""
    try:
        digits = Decimal(text).normalize().as_tuple().digits
    except InvalidOperation:
        return len(text)
    significant = len(digits) if any(digits) else 1
    return (significant + 1) // 2 + 1


def item_size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def _validation(message: str) -> tuple[Any, dict[str, Any]]:
    return error_response(400, "ValidationException", message)


def _transaction_parts(params: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for entry in params.get("TransactItems", []):
        yield from entry.values()


def _dynamodb(operation: str, params: Mapping[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    if operation == "TransactWriteItems":
        total = 0
        for body in _transaction_parts(params):
            total += item_size(body.get("Item") or body.get("Key") or {})
            total += sum(attribute_size(v) for v in (body.get("ExpressionAttributeValues") or {}).values())
        if total > DYNAMODB_MAX_TRANSACTION:
            return _validation(
                f"Transaction request size of {total} bytes exceeds the maximum allowed size of "
                f"{DYNAMODB_MAX_TRANSACTION} bytes (4 MB)"
            )
    if operation == "BatchWriteItem":
        requests = params.get("RequestItems", {})
        count = sum(len(r) for r in requests.values())
        if count > DYNAMODB_MAX_BATCH_WRITE:
            return _validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
                "Map value must satisfy constraint: [Member must have length less than or equal to 25, "
                "Member must have length greater than or equal to 1]"
            )
        total = 0
        for table_requests in requests.values():
            for request in table_requests:
                item = request.get("PutRequest", {}).get("Item") or request.get("DeleteRequest", {}).get(
                    "Key"
                )
                size = item_size(item or {})
                if size > DYNAMODB_MAX_ITEM:
                    return _validation("Item size has exceeded the maximum allowed size")
                total += size
        if total > DYNAMODB_MAX_BATCH_WRITE_BYTES:
            return _validation("Too many items requested for the BatchWriteItem call")
    return None


def eventbridge_entry_size(entry: Mapping[str, Any]) -> int:
    """EventBridge's documented PutEvents entry size."""
    size = EVENTBRIDGE_TIME_BYTES if "Time" in entry else 0
    for name in ("Source", "DetailType", "Detail"):
        if entry.get(name) is not None:
            size += len(str(entry[name]).encode("utf-8"))
    return size + sum(len(str(r).encode("utf-8")) for r in entry.get("Resources") or [])


def _events(operation: str, params: Mapping[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    if operation == "PutEvents":
        total = sum(eventbridge_entry_size(e) for e in params.get("Entries", []))
        if total > EVENTBRIDGE_MAX_REQUEST:
            return _validation("Total size of the entries in the request is over the limit.")
    return None


def _pinpoint(operation: str, params: Mapping[str, Any], body: bytes) -> tuple[Any, dict[str, Any]] | None:
    def bad(message: str) -> tuple[Any, dict[str, Any]]:
        return error_response(400, "BadRequestException", message)

    if len(body) > PINPOINT_MAX_PAYLOAD:
        return bad(
            f"Request payload of {len(body)} bytes exceeds the maximum of {PINPOINT_MAX_PAYLOAD} bytes"
        )
    if operation == "UpdateEndpointsBatch":
        endpoints = len(params.get("EndpointBatchRequest", {}).get("Item", []))
        if endpoints > PINPOINT_MAX_ENDPOINTS:
            return bad(f"Exceeded the maximum of {PINPOINT_MAX_ENDPOINTS} endpoints per batch: {endpoints}")
    if operation == "PutEvents":
        batch = params.get("EventsRequest", {}).get("BatchItem", {})
        events = sum(len(item.get("Events", {})) for item in batch.values())
        if events > PINPOINT_MAX_EVENTS:
            return bad(f"Exceeded the maximum of {PINPOINT_MAX_EVENTS} events per request: {events}")
        if len(body) > PINPOINT_MAX_EVENTS_REQUEST:
            return bad(
                f"Request of {len(body)} bytes exceeds the maximum of {PINPOINT_MAX_EVENTS_REQUEST} bytes"
            )
    return None


class ServiceLimits:
    """The ``before-call`` check for the limits above."""

    def __call__(self, model: Any, params: Mapping[str, Any], **kwargs: Any) -> Any:
        api = (kwargs.get("context") or {}).get(API_PARAMS, {})
        service = model.service_model.service_name
        if service == "dynamodb":
            return _dynamodb(model.name, api)
        if service == "events":
            return _events(model.name, api)
        if service == "pinpoint":
            body = params.get("body") or b""
            return _pinpoint(model.name, api, body if isinstance(body, bytes) else json.dumps(body).encode())
        return None
