"""Powertools Logger, Metrics and Tracer shared by every function (configured from POWERTOOLS_* env)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer()
