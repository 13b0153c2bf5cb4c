"""A local AWS emulator for one block of code: moto's server on 127.0.0.1, or moto in-process.

``running_emulator()`` serves moto on a port the OS picks (the demo: a real HTTP endpoint, as SAM
tools would talk to). The server runs in a thread of this process, so it cannot outlive it; the
context manager stops it on every exit path (normal end, an exception, Ctrl-C) and puts the
environment back as it was. While it runs, ``AWS_ENDPOINT_URL`` points every boto3 client this
process creates at it. ``embedded_emulator()`` is moto's in-process mock (``pia replay``: no
socket, faster). Both use fake credentials, so a local run can never reach, or be billed by, a
real account.
"""

from __future__ import annotations

import copy
import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend
from moto.server import ThreadedMotoServer

from pia_cli.environment import scoped_environment

HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Emulator:
    endpoint_url: str
    region: str

    def reset(self) -> None:
        """Start from nothing: moto keeps its state per process, and an earlier run may have left some."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def create_table(client: Any, name: str, *, ttl: bool = False) -> None:
    """The project's table shape (``pk``/``sk`` strings, on demand, the sparse ``pending`` index of
    items owing actions and the sparse ``due`` index of rollups with a due moment), as template.yaml
    declares it, for tests and benchmarks that need a table without deploying the stack. Only the
    time-series table declares ``due`` in the template; here every table has it, empty but for
    rollups."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "oq", "AttributeType": "S"},
            {"AttributeName": "od", "AttributeType": "N"},
            {"AttributeName": "wd", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "pending",
                "KeySchema": [
                    {"AttributeName": "oq", "KeyType": "HASH"},
                    {"AttributeName": "od", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "due",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "wd", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    if ttl:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )


@contextmanager
def one_backup_per_transaction() -> Iterator[None]:
    """moto deep-copies a whole table once per *item* of a TransactWriteItems (its rollback copy), so
    a 100-item transaction on a table of a few thousand items takes seconds and the demo minutes.
    This makes it take that copy once per table per transaction; moto's answers and stored items
    are unchanged, only its speed is."""
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        names = {op.get("TableName") for item in transact_items for op in item.values()}
        tables = [self.tables[name] for name in names if name in self.tables]
        for table in tables:
            backup = copy.deepcopy(table)
            table.__deepcopy__ = lambda memo, backup=backup: backup  # type: ignore[attr-defined]
        try:
            original(self, transact_items)
        finally:
            for table in tables:
                del table.__deepcopy__  # type: ignore[attr-defined]

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]


def _local_environment(endpoint_url: str | None, region: str) -> AbstractContextManager[None]:
    return scoped_environment(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
            "AWS_DEFAULT_REGION": region,
        }
    )


@contextmanager
def embedded_emulator(region: str | None = None) -> Iterator[Emulator]:
    """moto in-process: every boto3 client created inside the block talks to a fresh, private state."""
    chosen = region or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    with _local_environment(None, chosen), mock_aws(), one_backup_per_transaction():
        yield Emulator("in-process", chosen)


@contextmanager
def running_emulator(region: str | None = None) -> Iterator[Emulator]:
    """Start moto's server, point this process' AWS clients at it, and always stop it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    chosen = region or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        emulator = Emulator(f"http://{host}:{port}", chosen)
        emulator.reset()
        with _local_environment(emulator.endpoint_url, chosen), one_backup_per_transaction():
            yield emulator
    finally:
        server.stop()
