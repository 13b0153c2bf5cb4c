"""A strict local executor for the PartiQL write batches the state path sends (``BatchExecuteStatement``).

moto 5.2.5 (py-partiql-parser 0.6.3) cannot run them: a parameterised ``INSERT`` raises, an
``UPDATE`` with more than one ``SET`` fails an assertion, an ``INSERT`` over an existing item
silently overwrites it, and a ``WHERE`` on a non-key attribute that does not hold is no
``ConditionalCheckFailed`` but a silent no-op. So local runs answer ``BatchExecuteStatement`` here,
on moto's own tables, for exactly the two shapes :class:`pia.aws.state_table.StateTable` emits:

- ``INSERT INTO "t" VALUE {'a': ?, ...}``: ``DuplicateItem`` (without the item) if it exists;
- ``UPDATE "t" SET "a" = ? ... REMOVE "b" ... WHERE "pk" = ? AND "sk" = ? AND "v" = ?``:
  ``ConditionalCheckFailed`` if the item is missing or a condition does not hold, with the item
  when the statement asks for ``ALL_OLD``.

As strict as DynamoDB, where moto would be kinder: 1 to 25 statements; two statements on one item
refuse the whole batch (``ValidationException``); an item over 400 KB fails its statement
(``ValidationError``); a statement of any other shape fails with ``ValidationError`` rather than
being guessed at. Each statement succeeds or fails alone, as in DynamoDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.models import DynamoDBBackend

from pia_cli.service_limits import DYNAMODB_MAX_ITEM, item_size

MAX_STATEMENTS = 25
MAX_STATEMENT_LENGTH = 8192
"""PartiQLStatement's limit in the service model; botocore does not check a string's maximum."""
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_INSERT = re.compile(r'^INSERT INTO "(?P<table>[^"]+)" VALUE \{(?P<body>.*)\}$')
_INSERT_FIELD = re.compile(rf"^'(?P<name>{_NAME})': \?$")
_UPDATE = re.compile(
    rf'^UPDATE "(?P<table>[^"]+)"(?P<set>(?: SET "{_NAME}" = \?)*)(?P<remove>(?: REMOVE "{_NAME}")*)'
    rf' WHERE (?P<where>"{_NAME}" = \?(?: AND "{_NAME}" = \?)*)$'
)
_QUOTED = re.compile(rf'"({_NAME})"')


class StatementError(Exception):
    """One statement's failure, in DynamoDB's per-statement error vocabulary."""

    def __init__(self, code: str, message: str, item: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.item = item


@dataclass(frozen=True)
class ParsedWrite:
    """One write statement with its parameters bound."""

    kind: str
    table: str
    values: Mapping[str, Any]
    """INSERT: the whole item; UPDATE: the attributes it sets."""
    remove: tuple[str, ...] = ()
    where: Mapping[str, Any] | None = None


def parse_write(statement: str, parameters: Sequence[Mapping[str, Any]]) -> ParsedWrite:
    """The statement's shape and bound values, or a ``ValidationError`` naming what is wrong."""
    inserted = _INSERT.match(statement)
    if inserted:
        names = []
        for part in inserted["body"].split(", "):
            field = _INSERT_FIELD.match(part)
            if field is None:
                raise StatementError("ValidationError", f"Unsupported INSERT value element: {part!r}")
            names.append(field["name"])
        _check_arity(statement, names, parameters)
        return ParsedWrite("insert", inserted["table"], dict(zip(names, parameters, strict=True)))
    updated = _UPDATE.match(statement)
    if updated:
        sets = _QUOTED.findall(updated["set"])
        removes = tuple(_QUOTED.findall(updated["remove"]))
        where = _QUOTED.findall(updated["where"])
        _check_arity(statement, sets + where, parameters)
        if len(set(sets) | set(removes)) != len(sets) + len(removes) or len(set(where)) != len(where):
            raise StatementError("ValidationError", "Two document paths overlap with each other")
        return ParsedWrite(
            "update",
            updated["table"],
            dict(zip(sets, parameters[: len(sets)], strict=True)),
            removes,
            dict(zip(where, parameters[len(sets) :], strict=True)),
        )
    raise StatementError(
        "ValidationError", f"Statement shape not supported by the local executor: {statement}"
    )


def partiql_target(statement: str) -> tuple[str, str]:
    """A statement's verb and table, as IAM authorizes it (``("INSERT", "t")``)."""
    match = re.match(r'^\s*(\w+)\s+(?:INTO\s+|FROM\s+)?"?([^"\s]+)"?', statement)
    verb = match[1].upper() if match else ""
    if verb == "SELECT":
        found = re.search(r'FROM\s+"?([^"\s]+)"?', statement, re.IGNORECASE)
        return verb, found[1] if found else "*"
    return verb, match[2] if match else "*"


def _check_arity(statement: str, names: Sequence[str], parameters: Sequence[Any]) -> None:
    if len(names) != len(parameters):
        raise StatementError(
            "ValidationError",
            f"Number of parameters in request and statement don't match: {len(parameters)} != "
            f"{len(names)} in {statement}",
        )


def key_of(backend: DynamoDBBackend, write: ParsedWrite) -> dict[str, Any]:
    """The item a write addresses; an UPDATE must name every key attribute in its WHERE."""
    table = backend.get_table(write.table)
    names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
    source = write.values if write.kind == "insert" else (write.where or {})
    missing = [n for n in names if n not in source]
    if missing:
        raise StatementError(
            "ValidationError",
            f"Where clause does not contain a mandatory equality on all key attributes: {missing}",
        )
    return {name: source[name] for name in names}


def _equal(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """DynamoDB's equality of two attribute values: numbers compare as numbers."""
    if "N" in left and "N" in right:
        try:
            return Decimal(left["N"]) == Decimal(right["N"])
        except InvalidOperation:
            return False
    return dict(left) == dict(right)


def _current(backend: DynamoDBBackend, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
    item = backend.get_item(table, dict(key))
    return None if item is None else dict(item.to_json()["Attributes"])


def execute(backend: DynamoDBBackend, request: Mapping[str, Any]) -> dict[str, Any]:
    """Run one statement on moto's table: its ``BatchStatementResponse`` (``TableName``, or ``Error``)."""
    try:
        write = parse_write(request["Statement"], request.get("Parameters", []))
        if write.table not in backend.tables:
            raise StatementError("ResourceNotFound", "Requested resource not found")
        key = key_of(backend, write)
        current = _current(backend, write.table, key)
        if write.kind == "insert":
            if current is not None:
                raise StatementError("DuplicateItem", "Duplicate primary key exists in table")
            after = dict(write.values)
        else:
            conditions = write.where or {}
            holds = current is not None and all(
                name in current and _equal(current[name], value) for name, value in conditions.items()
            )
            if current is None or not holds:
                old = current if request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
                raise StatementError("ConditionalCheckFailed", "The conditional request failed", old)
            after = {**current, **write.values}
            for name in write.remove:
                after.pop(name, None)
        if item_size(after) > DYNAMODB_MAX_ITEM:
            raise StatementError("ValidationError", "Item size has exceeded the maximum allowed size")
        backend.put_item(write.table, after)
    except StatementError as error:
        answer: dict[str, Any] = {"Code": error.code, "Message": error.message}
        if error.item is not None:
            answer["Item"] = dict(error.item)
        return {"Error": answer}
    return {"TableName": write.table}


def batch_execute_statement(
    backend: DynamoDBBackend, statements: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The whole batch: refused at once if it breaks a batch rule, else each statement on its own."""
    if not 1 <= len(statements) <= MAX_STATEMENTS:
        raise MockValidationException(
            "1 validation error detected: Value at 'statements' failed to satisfy constraint: Member must "
            f"have length less than or equal to {MAX_STATEMENTS}"
        )
    for request in statements:
        if len(request["Statement"]) > MAX_STATEMENT_LENGTH:
            raise MockValidationException(
                "1 validation error detected: Value at 'statements.member.statement' failed to satisfy "
                f"constraint: Member must have length less than or equal to {MAX_STATEMENT_LENGTH}"
            )
    seen: set[tuple[str, str]] = set()
    for request in statements:
        try:
            write = parse_write(request["Statement"], request.get("Parameters", []))
            if write.table not in backend.tables:
                continue
            address = (write.table, repr(sorted(key_of(backend, write).items())))
        except StatementError:
            continue
        if address in seen:
            raise MockValidationException("Provided list of item keys contains duplicates")
        seen.add(address)
    return [execute(backend, request) for request in statements]


@contextmanager
def partiql_batches() -> Iterator[None]:
    """Answer ``BatchExecuteStatement`` with this executor on every moto backend while open."""
    original = DynamoDBBackend.batch_execute_statement

    def run(self: DynamoDBBackend, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return batch_execute_statement(self, statements)

    DynamoDBBackend.batch_execute_statement = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.batch_execute_statement = original  # type: ignore[method-assign]
