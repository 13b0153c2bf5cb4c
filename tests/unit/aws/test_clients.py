"""A container makes each AWS client once: a second client of a service costs a cold start tens of
milliseconds of CPU (``make bench``, cold-start figures), however many adapters share it."""

from __future__ import annotations

from pia.aws.clients import AwsClients


def test_the_same_service_and_region_gets_the_same_client() -> None:
    clients = AwsClients()
    dynamodb = clients("dynamodb", region_name="us-east-1")
    assert clients("dynamodb", region_name="us-east-1") is dynamodb
    assert clients("dynamodb", region_name="eu-west-1") is not dynamodb
    assert clients("s3", region_name="us-east-1") is not dynamodb


def test_each_container_has_its_own_clients() -> None:
    assert AwsClients()("events", region_name="us-east-1") is not AwsClients()(
        "events", region_name="us-east-1"
    )
