"""Powertools Logger, Metrics and Tracer shared by every function (configured from POWERTOOLS_* env).

The tracer patches botocore only: every AWS call of every function goes through it, and X-Ray's
default of patching every library it supports costs cold-start import time for libraries no function
uses (measured by ``make bench``, see BENCHMARKS.md).
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer(patch_modules=("botocore",))
