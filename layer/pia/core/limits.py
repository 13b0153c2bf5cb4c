"""Bounds on untrusted input, so no event field reaches a key or an API unbounded.

A bound decides what happens to a record only when no correct processing of it exists past it: a
record is rejected as poison for a field the engine must keep whole and cannot (a user id too long
for the targets' keys). A field no rule could ever match (an attribute value longer than a rule's
AttributeValue may be) is ignored instead, and the record still counts for every other rule.

The Pinpoint figures are Pinpoint's own limits for events (not its smaller endpoint-attribute ones).
"""

MAX_EVENT_TYPE = 50
MAX_ATTRIBUTE_NAME = 50
MAX_ATTRIBUTE_VALUE = 200
"""Pinpoint's limit for an event attribute value; a rule's AttributeValue has the same bound, so a
longer value can match no rule. (Pinpoint's endpoint attributes stop at 100; the engine writes only
``ready``/``not-ready`` there.)"""
MAX_OUTPUT_NAME = 50
MAX_USER_ID = 256
MAX_ENDPOINT_ID = 256
MAX_EVENT_ID = 256
MAX_RECORD_BYTES = 1024 * 1024
"""Kinesis Data Streams' largest record (1 MiB): anything bigger never arrives through the stream."""
MAX_ENDPOINTS_PER_USER = 15
