# One entry point for people and CI. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
TOOLS := .venv-tools
# Stand-ins for the layers the template resolves from AWS, installed once per pinned version.
LAYERS := .venv-layers
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml tools-requirements.txt 2>/dev/null | sha1sum | cut -c1-12)
TOOLS_STAMP := $(TOOLS)/.installed-$(shell sha1sum tools-requirements.txt 2>/dev/null | cut -c1-12)
# The first python3.13 that runs (a pyenv shim is on PATH even when 3.13 is not the selected version).
PY313 ?= $(shell for p in $$(command -v python3.13) $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)
TARGETS ?= pinpoint
FUNCTION ?= aggregator
EVENT ?= events/kinesis-batch.json
export AWS_DEFAULT_REGION ?= us-east-1
export POWERTOOLS_METRICS_NAMESPACE ?= PinpointIncrementalAnalytics
export POWERTOOLS_SERVICE_NAME ?= pia
export SAM_CLI_TELEMETRY ?= 0

.PHONY: install test lint unit pytest build artifacts validate demo invoke bench reliability clean

install: $(STAMP)

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

# SAM CLI and checkov pin their own boto3/botocore; they live apart so they never move ours.
$(TOOLS_STAMP):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet -r tools-requirements.txt
	rm -f $(TOOLS)/.installed-*; touch $@

lint: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	$(TOOLS)/bin/sam validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)
	$(TOOLS)/bin/checkov --quiet --compact --skip-download --framework cloudformation -f template.yaml

pytest: $(STAMP)
	$(BIN)/pytest -q -n auto $(PYTEST_ARGS) || [ $$? -eq 5 ]

test: lint pytest artifacts

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

build: $(TOOLS_STAMP)
	@test -n "$(PY313)" || { echo "python3.13 not found (pyenv install 3.13)"; exit 1; }
	PATH="$$(dirname $(PY313)):$$PATH" $(TOOLS)/bin/sam build --template template.yaml

# What `make build` produced imports under python3.13 with only each function's layers and the
# runtime's boto3 (tools/artifacts.py). Both need a python3.13; without one the check says so and passes.
artifacts: $(STAMP)
	@if [ -z "$(PY313)" ]; then \
		echo "SKIPPED built-artifact check: no python3.13 on this machine (pyenv install 3.13), so no sam build either"; \
	else \
		$(MAKE) --no-print-directory build && $(BIN)/python -m tools.artifacts --python "$(PY313)" --cache $(LAYERS); \
	fi

demo: $(STAMP)
	$(BIN)/python -m pia_cli.demo --targets $(TARGETS)

# sam local invoke of one function with one sample event, against the local emulator (Docker needed;
# without it, the same event runs in-process).
invoke: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/python -m pia_cli.invoke --function $(FUNCTION) --event $(EVENT) --sam $(TOOLS)/bin/sam

bench: $(STAMP)
	$(BIN)/python -m bench

reliability: $(STAMP)
	PIA_RELIABILITY_EXAMPLES=$${PIA_RELIABILITY_EXAMPLES:-200} PIA_RELIABILITY_REPORT=docs/RELIABILITY.md $(BIN)/pytest -q -m reliability -p no:randomly tests

clean:
	rm -rf $(VENV) $(TOOLS) $(LAYERS) .aws-sam .mypy_cache .pytest_cache .ruff_cache
