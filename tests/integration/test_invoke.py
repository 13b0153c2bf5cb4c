"""``make invoke``: everything up to the Docker call, and the in-process run where Docker is absent."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from pia_cli.invoke import invoke
from pia_cli.local_stack import REPOSITORY

EVENT = REPOSITORY / "events" / "kinesis-batch.json"
SAM = REPOSITORY / ".venv-tools" / "bin" / "sam"


def test_with_docker_it_bundles_the_layers_and_runs_sam_local_invoke_against_the_emulator(
    tmp_path: Path,
) -> None:
    commands: list[list[str]] = []
    seen_env_vars: list[dict[str, dict[str, str]]] = []

    def run(command: Sequence[str]) -> int:
        commands.append(list(command))
        if "local" in command:  # what sam would read, while the emulator is still up
            seen_env_vars.append(json.loads((tmp_path / "env-vars.json").read_text()))
        return 0

    out = io.StringIO()
    status = invoke(
        "aggregator", EVENT, sam="sam", build_dir=tmp_path, run=run, docker_problem=lambda: None, out=out
    )

    assert status == 0
    powertools, shared, sam = commands
    assert "aws-lambda-powertools[tracer]==3.22.1" in powertools and "manylinux2014_aarch64" in powertools
    assert str(tmp_path / "powertools" / "python") in powertools
    assert str(tmp_path / "shared" / "python") in shared and "manylinux2014_aarch64" in shared
    assert (tmp_path / "shared" / "python" / "pia" / "core" / "events.py").is_file()
    assert sam[:4] == ["sam", "local", "invoke", "AggregatorFunction"]
    assert sam[sam.index("--env-vars") + 1] == str(tmp_path / "env-vars.json")
    assert sam[sam.index("--event") + 1] == str(EVENT)
    (environment,) = seen_env_vars[0].values()
    endpoint = out.getvalue().split("emulator: ", 1)[1].split(";", 1)[0]
    assert environment["AWS_ENDPOINT_URL"] == endpoint
    assert environment["ACTION_TARGETS"] == "eventbridge"

    template_text = (tmp_path / "template.json").read_text()
    assert "resolve:ssm" not in template_text, "the layers must need no AWS account"
    function = json.loads(template_text)["Resources"]["AggregatorFunction"]["Properties"]
    assert set(function["Environment"]["Variables"]) == set(environment), "SAM passes only declared variables"
    if SAM.exists():
        validated = subprocess.run(
            [str(SAM), "validate", "--lint", "-t", str(tmp_path / "template.json"), "--region", "us-east-1"],
            capture_output=True,
            text=True,
            check=False,
            env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin"},
        )
        assert validated.returncode == 0, validated.stdout + validated.stderr


def test_without_docker_it_says_so_and_runs_the_same_event_in_process(tmp_path: Path) -> None:
    def run(command: Sequence[str]) -> int:
        pytest.fail(f"nothing may run without Docker: {command}")

    out = io.StringIO()
    status = invoke(
        "aggregator", EVENT, build_dir=tmp_path, run=run, docker_problem=lambda: "no engine", out=out
    )

    assert status == 0
    text = out.getvalue()
    assert "Docker is not available here: no engine." in text
    assert "sam local invoke AggregatorFunction" in text
    assert json.loads(text[text.index("{\n") :]) == {"batchItemFailures": []}
