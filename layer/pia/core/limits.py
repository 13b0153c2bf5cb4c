"""Bounds on untrusted input, so no event field reaches a key or an API unbounded.

The Pinpoint figures are Pinpoint's own limits; the rest keep a DynamoDB item under 1 KB in the
common case and a hostile record from costing more than a normal one.
"""

MAX_EVENT_TYPE = 50
MAX_ATTRIBUTE_NAME = 50
MAX_ATTRIBUTE_VALUE = 100
MAX_OUTPUT_NAME = 50
MAX_USER_ID = 256
MAX_ENDPOINT_ID = 256
MAX_ATTRIBUTES = 50
MAX_METRICS = 50
MAX_RECORD_BYTES = 256 * 1024
MAX_ENDPOINTS_PER_USER = 15
