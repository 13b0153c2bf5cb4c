"""``pia replay``: preview what a rule table would do to a sample of events, before publishing it.

Runs the real pipeline in-process on a fresh embedded emulator (moto in-process; nothing is
deployed anywhere): deploy template.yaml, publish the rule file through the rule poller, put the
events on the stack's stream in file order, let the local event source mapping feed them to the
aggregator in batches, then run the evaluator, and the action relay one value-update interval later
(so a value output the rate limit deferred shows as its latest value). ``--now`` is the clock every
function reads.

The result is one JSON document on stdout; logs go to stderr. The exit status is non-zero only when
the run itself fails: rejected rule rows and skipped records are part of the answer.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from pia.core.events import RecordRejected, Skipped, parse_event
from pia.core.mapping import PARAMETERS, FieldMapping, MappingError
from pia.rules.aggregates import VALUE_UPDATE_SECONDS
from pia.rules.sheets import SheetError, read_table
from pia.rules.table import TableError, parse_table

log = logging.getLogger("pia_cli.replay")

STACK_NAME = "pia-replay"
MIN_BATCH, MAX_BATCH = 1, 10_000
KINESIS_MAX_RECORD_BYTES = 1024 * 1024
"""PutRecords refuses a larger record (data plus partition key)."""


@dataclass(frozen=True)
class InputLine:
    number: int
    data: bytes
    partition_key: str

    @property
    def stream_bytes(self) -> int:
        return len(self.data) + len(self.partition_key.encode())

    @property
    def fits_the_stream(self) -> bool:
        """A line Kinesis would refuse never reaches the aggregator: it is a rejected record of the
        answer, as it would be a failed PutRecords entry for the producer, not a failed run."""
        return self.stream_bytes <= KINESIS_MAX_RECORD_BYTES


def parse_now(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-04-30T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _batch_size(text: str) -> int:
    value = int(text)
    if not MIN_BATCH <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"--batch-size must be {MIN_BATCH}..{MAX_BATCH}, as in Lambda")
    return value


def read_lines(path: Path) -> Iterator[InputLine]:
    """Each non-blank line is one record, exactly as given; its partition key follows the user."""
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            data = raw.rstrip(b"\r\n")
            if data.strip():
                yield InputLine(number, data, _partition_key(data, number))


def _partition_key(data: bytes, number: int) -> str:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return f"line-{number}"
    if not isinstance(document, dict):
        return f"line-{number}"
    endpoint = _object(document.get("endpoint"))
    user, client = _object(endpoint.get("User")), _object(document.get("client"))
    candidates = (
        user.get("UserId"),
        document.get("user_id"),
        document.get("userId"),
        endpoint.get("Id"),
        client.get("client_id"),
    )
    for key in candidates:
        if isinstance(key, str) and key:
            return key[:256]
    return f"line-{number}"


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def count_skipped(lines: list[InputLine], mapping: FieldMapping | None = None) -> int:
    """Records the aggregator does not count, classified by the aggregator's own parser."""
    skipped = 0
    for line in lines:
        try:
            if not line.fits_the_stream:
                raise RecordRejected(
                    "data",
                    f"{line.stream_bytes} bytes is over Kinesis' 1 MiB record limit: not put on the stream",
                )
            parsed = parse_event(line.data, mapping)
        except RecordRejected as exc:
            log.warning("line %d rejected: %s: %s", line.number, exc.field, exc.reason)
            skipped += 1
            continue
        if isinstance(parsed, Skipped):
            log.info("line %d skipped (%s): %s", line.number, parsed.reason.value, parsed.event_type)
            skipped += 1
    return skipped


def rejected_rules(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The rows the poller rejects, and whether the table as a whole can be read at all."""
    try:
        result = parse_table(read_table(path.name, path.read_bytes()))
    except (SheetError, TableError) as exc:
        return [{"row": 1, "column": "header", "message": str(exc)}], False
    return [{"row": i.row, "column": i.column, "message": i.message} for i in result.errors], True


def replay(
    rules: Path,
    events: Path,
    now: datetime,
    batch_size: int = 100,
    log_stream: TextIO | None = None,
    log_level: str = "WARNING",
    mapping: FieldMapping | None = None,
) -> dict[str, Any]:
    # moto and SAM's translator take over a second to import; `pia rules ...` should not wait for them.
    from pia_cli.emulator import embedded_emulator  # noqa: PLC0415
    from pia_cli.local_stack import LOCAL_EVENT_BUS, LOCAL_PINPOINT_APP, LocalStack  # noqa: PLC0415

    lines = list(read_lines(events))
    rejected, readable = rejected_rules(rules)
    parameters = {
        "PinpointApplicationId": LOCAL_PINPOINT_APP,
        "ActionTargets": "eventbridge",
        "EventBusName": LOCAL_EVENT_BUS,
        "BatchSize": str(batch_size),
        "StartingPosition": "TRIM_HORIZON",
        "StreamShardCount": "1",
    }
    if mapping is not None:
        parameters.update({PARAMETERS[f.name]: getattr(mapping, f.name) for f in fields(mapping)})
    clock = [now]
    with embedded_emulator() as emulator:
        stack = LocalStack.deploy(
            STACK_NAME,
            parameters,
            region=emulator.region,
            clock=lambda: clock[0],
            log_stream=log_stream or sys.stderr,
            log_level=log_level,
        )
        with stack:
            stack.capture_eventbridge()
            if readable:
                outcome = stack.publish_rules(rules)
                log.info("rules published: %s", outcome)
            runner = stack.mapping_runner("aggregator")
            stack.put_records((line.data, line.partition_key) for line in lines if line.fits_the_stream)
            stats = runner.drain()
            log.info(
                "%d records, %d invocations, %d retries, %d records to the on-failure queue",
                stats.records_read,
                stats.invocations,
                stats.retries,
                stats.records_discarded,
            )
            if stats.records_discarded:
                raise RuntimeError(
                    f"{stats.records_discarded} records could not be processed (function errors above)"
                )
            stack.run_scheduled("evaluator")
            if stack.has_function("action_relay"):
                # What the rate limit of value outputs deferred is sent by the relay once the interval
                # ends: the preview shows each user's latest value, as the target will hold it.
                clock[0] = now + timedelta(seconds=VALUE_UPDATE_SECONDS)
                stack.run_scheduled("action_relay")
            view = stack.targets_view()
    return {
        "user_attributes": {
            user: dict(sorted(view.attributes[user].items())) for user in sorted(view.attributes)
        },
        "fired_events": [
            {"user_id": user, "event_type": event_type, "count": count}
            for (user, event_type), count in sorted(view.fired.items())
        ],
        "rejected_rules": rejected,
        "skipped_records": count_skipped(lines, mapping),
    }


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules", type=Path, required=True, metavar="RULES.csv|RULES.xlsx", help="the rule table"
    )
    parser.add_argument(
        "--events",
        type=Path,
        required=True,
        metavar="EVENTS.jsonl",
        help="one event-stream JSON object a line",
    )
    parser.add_argument(
        "--now",
        type=parse_now,
        default=None,
        help="the clock for the whole run, ISO 8601 (default: the current time)",
    )
    parser.add_argument(
        "--batch-size", type=_batch_size, default=100, help="records per aggregator invocation"
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=JMESPATH",
        help=(
            "the stack's field mapping for JSON in no built-in format, one field at a time: "
            f"{', '.join(PARAMETERS)} (user_id, event_type and timestamp are required)"
        ),
    )
    parser.add_argument("--verbose", action="store_true", help="the functions' INFO logs on stderr")


def field_mapping(pairs: list[str]) -> FieldMapping | None:
    expressions: dict[str, str] = {}
    for pair in pairs:
        name, separator, expression = pair.partition("=")
        if not separator or name not in PARAMETERS:
            raise MappingError(
                f"--map {pair!r}: expected FIELD=JMESPATH with FIELD one of {', '.join(PARAMETERS)}"
            )
        expressions[name] = expression
    return FieldMapping.declared(expressions)


def run(args: argparse.Namespace) -> int:
    """The ``pia replay`` command: stdout carries only the JSON answer."""
    for path in (args.rules, args.events):
        if not path.is_file():
            print(f"pia replay: {path} is not a file", file=sys.stderr)
            return 2
    try:
        mapping = field_mapping(args.map)
    except MappingError as exc:
        print(f"pia replay: {exc}", file=sys.stderr)
        return 2
    tooling = logging.getLogger("pia_cli")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pia replay: %(levelname)s %(message)s"))
    level = tooling.level
    tooling.addHandler(handler)
    tooling.setLevel(logging.INFO if args.verbose else logging.WARNING)
    stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        now = args.now or datetime.now(UTC)
        logs = sys.stderr if args.verbose else cast(TextIO, WithoutMetrics(sys.stderr))
        functions_level = "INFO" if args.verbose else "WARNING"
        document = replay(args.rules, args.events, now, args.batch_size, logs, functions_level, mapping)
    except Exception as exc:
        log.exception("replay failed: %s", exc)
        return 1
    finally:
        sys.stdout = stdout
        tooling.removeHandler(handler)
        tooling.setLevel(level)
    try:
        json.dump(document, stdout, indent=2, ensure_ascii=False)
        stdout.write("\n")
        stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (``| head``): not a failure of the run. Point stdout at
        # /dev/null so the interpreter's last flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
    return 0


class WithoutMetrics(io.TextIOBase):
    """The functions' output minus Powertools' metric documents (CloudWatch EMF, one JSON line each):
    on a terminal they bury the warnings a marketer needs to see."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if not line.startswith('{"_aws"'):
                self._target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._target.flush()
