"""A declared field mapping: any other JSON event, read through JMESPath expressions the stack
declares (``Mapping*`` parameters), so a producer such as Amplify's Kinesis provider or an in-house
format needs no change to be counted.

The expressions run on Powertools' JMESPath support (``query``), so ``powertools_json(...)`` reads an
event that a producer wrapped as a JSON string. A bad expression is a deployment error, reported at
cold start with the parameter it came from (compiled by the same ``jmespath`` library Powertools runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, cast

import jmespath  # type: ignore[import-untyped]
from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]

from pia.core.fields import FieldNames, Fields, id_text

PARAMETERS = {
    "user_id": "MappingUserId",
    "event_type": "MappingEventType",
    "timestamp": "MappingTimestamp",
    "attributes": "MappingAttributes",
    "metrics": "MappingMetrics",
    "event_id": "MappingEventId",
}
REQUIRED = ("user_id", "event_type", "timestamp")


class MappingError(ValueError):
    """The declared mapping cannot read any record: fix the stack parameter it names."""


@dataclass(frozen=True)
class FieldMapping:
    user_id: str = ""
    event_type: str = ""
    timestamp: str = ""
    attributes: str = ""
    metrics: str = ""
    event_id: str = ""

    def __post_init__(self) -> None:
        declared = {f.name: getattr(self, f.name) for f in fields(self)}
        missing = [PARAMETERS[name] for name in REQUIRED if not declared[name]]
        if missing:
            raise MappingError(f"a field mapping needs {', '.join(missing)} as well")
        for name, expression in declared.items():
            if expression:
                try:
                    jmespath.compile(expression)
                except JMESPathError as exc:
                    first_line = str(exc).splitlines()[0]
                    raise MappingError(
                        f"{PARAMETERS[name]}: {expression!r} is not a JMESPath expression ({first_line})"
                    ) from None

    @staticmethod
    def declared(expressions: Mapping[str, str]) -> FieldMapping | None:
        """The mapping the stack declares, or ``None`` when it declares none."""
        if not any(expressions.values()):
            return None
        return FieldMapping(**expressions)

    @cached_property
    def names(self) -> FieldNames:
        """A rejected mapped record names the expression that found the bad value."""
        return FieldNames(
            self.event_type,
            self.user_id,
            self.timestamp,
            self.attributes,
            self.metrics,
            self.event_id,
            "endpoint_id",
        )

    def fields(self, doc: Mapping[str, Any]) -> Fields:
        return Fields(
            self.names,
            _find(doc, self.event_type),
            id_text(_find(doc, self.user_id)),
            _find(doc, self.timestamp),
            _find(doc, self.attributes),
            _find(doc, self.metrics),
            _find(doc, self.event_id),
        )


def _find(doc: Mapping[str, Any], expression: str) -> object:
    if not expression:
        return None
    # Imported here, on the first mapped record: importing Powertools loads botocore, which the
    # pure modules (and the decoder of every other format) must not.
    from aws_lambda_powertools.exceptions import InvalidEnvelopeExpressionError  # noqa: PLC0415
    from aws_lambda_powertools.utilities.jmespath_utils import query  # noqa: PLC0415

    try:
        return query(cast(dict[str, Any], doc), expression)
    except (InvalidEnvelopeExpressionError, ValueError):
        # A function given what it cannot read (powertools_json of a number, or of text that is
        # not JSON): this record does not have the field.
        return None
