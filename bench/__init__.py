"""``make bench``: cost and speed of the aggregator against a naive per-event baseline, in one run.

Counts (round trips, item reads, write units) come from botocore event hooks on every client the
handler builds, so they do not depend on how loaded the machine is. Timings are ratios against a
reference measured in the same run (bare decode, bare ``import boto3``), for the same reason.
"""
