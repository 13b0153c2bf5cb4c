"""The ``pia`` console script.

Each subcommand is one function, registered with its arguments in ``COMMANDS``; a command's path
names its place in the tree (``("rules", "validate")`` is ``pia rules validate``). Adding a command
is adding one function and one table entry.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from pia.rules.s3source import RuleBucket, normalize_prefix, report_key_for
from pia.rules.sheets import (
    MAX_FILE_BYTES,
    SheetError,
    ValidationReport,
    build_report,
    printable,
    read_table,
    render_csv,
    render_json,
    render_text,
    table_failure_report,
)
from pia.rules.table import TableError, parse_table
from pia_cli import replay
from pia_cli.rule_template import write_template

Runner = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    help: str
    run: Runner
    arguments: Arguments = field(default=_no_arguments)


GROUPS = {"rules": "the marketer's rule table: start, check and upload it"}


def validate_file(path: Path) -> ValidationReport:
    """The same report the poller writes next to the file, without the near-miss warnings (those
    need the engine's recent events)."""
    try:
        with path.open("rb") as source:
            data = source.read(MAX_FILE_BYTES + 1)  # enough for read_table to refuse a larger file
        table = read_table(path.name, data)
        return build_report(path.name, parse_table(table))
    except (SheetError, TableError) as exc:
        return table_failure_report(path.name, str(exc))


def _file_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a .csv or .xlsx rule table")


def rules_template(args: argparse.Namespace) -> int:
    path: Path = args.file
    if path.suffix.lower() != ".xlsx":
        print(f"pia: {printable(str(path))} must end in .xlsx", file=sys.stderr)
        return 2
    if path.exists() and not args.overwrite:
        print(f"pia: {printable(str(path))} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    write_template(path)
    print(f"wrote {printable(str(path))}: the rule table with dropdowns and the three example rules")
    return 0


def _template_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="the .xlsx file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")


RENDERERS: dict[str, Callable[[ValidationReport], str]] = {
    "text": render_text,
    "csv": lambda report: render_csv(report).decode("utf-8-sig"),
    "json": lambda report: render_json(report).decode() + "\n",
}


def rules_validate(args: argparse.Namespace) -> int:
    report = validate_file(args.file)
    sys.stdout.write(RENDERERS[args.format](report))
    return 1 if report.has_errors else 0


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    _file_argument(parser)
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text", help="report format")


def _s3_client() -> Any:
    return boto3.client("s3")


def rules_push(args: argparse.Namespace) -> int:
    bucket_name = args.bucket or os.environ.get("PIA_RULES_BUCKET", "")
    if not bucket_name:
        print("pia: no bucket; pass --bucket or set PIA_RULES_BUCKET", file=sys.stderr)
        return 2
    path: Path = args.file
    report = validate_file(path)
    sys.stdout.write(render_text(report))
    if report.has_errors and not args.force:
        print(
            f"pia: not pushed: {printable(path.name)} has errors (fix them, or pass --force)", file=sys.stderr
        )
        return 1
    bucket = RuleBucket(_s3_client(), bucket_name, args.prefix)
    key = bucket.prefix + path.name
    location = bucket.put(key, path.read_bytes())
    print(f"pushed {printable(location)}; the rule poller publishes it within a minute")
    print(f"its report will be {printable(bucket.uri(report_key_for(key)))}")
    return 0


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    _file_argument(parser)
    parser.add_argument("--bucket", help="the rules bucket (default: $PIA_RULES_BUCKET)")
    parser.add_argument(
        "--prefix", type=normalize_prefix, default="rules/", help="key prefix (default rules/)"
    )
    parser.add_argument("--force", action="store_true", help="push even when some rows have errors")


COMMANDS: list[Command] = [
    Command(
        ("rules", "template"),
        "write a starting rule table (XLSX with dropdowns)",
        rules_template,
        _template_arguments,
    ),
    Command(
        ("rules", "validate"), "check a rule table and print its report", rules_validate, _validate_arguments
    ),
    Command(
        ("rules", "push"),
        "validate a rule table and upload it to the rules bucket",
        rules_push,
        _push_arguments,
    ),
    Command(
        ("replay",),
        "preview a rule table on sample events (local, no AWS account): prints the resulting attributes",
        replay.run,
        replay.arguments,
    ),
]


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pia", description="pinpoint-incremental-analytics tools")
    groups: dict[tuple[str, ...], Any] = {
        (): parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    }
    for command in commands:
        for depth in range(1, len(command.path)):
            prefix = command.path[:depth]
            if prefix not in groups:
                name = prefix[-1]
                group = groups[prefix[:-1]].add_parser(
                    name, help=GROUPS.get(name), description=GROUPS.get(name)
                )
                groups[prefix] = group.add_subparsers(dest="_".join(prefix), required=True, metavar="COMMAND")
        sub = groups[command.path[:-1]].add_parser(
            command.path[-1], help=command.help, description=command.help
        )
        command.arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runner: Runner = args.run
    return runner(args)


if __name__ == "__main__":
    sys.exit(main())
