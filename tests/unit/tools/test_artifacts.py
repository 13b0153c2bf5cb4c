"""The built-artifact check: it resolves each function's layers from the template, and a handler that
needs a module Lambda would not have fails the check, naming the module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tools.artifacts import ArtifactError, Function, check, functions, load_template, parameter_defaults

ROOT = Path(__file__).resolve().parents[3]


def stand_in(name: str, requirement: str) -> Path:
    return Path("/stand-ins") / name / requirement


def test_every_function_gets_the_layers_the_template_declares_at_their_pinned_versions() -> None:
    template = load_template(ROOT / "template.yaml")
    pinned = parameter_defaults(template)
    found = {f.name: f for f in functions(template, ROOT, stand_in)}
    powertools = stand_in("powertools", f"aws-lambda-powertools[tracer]=={pinned['PowertoolsVersion']}")
    pandas = stand_in("sdk-pandas", f"awswrangler=={pinned['PandasVersion']}")
    shared = ROOT / "layer"
    assert set(found) == {
        "AggregatorFunction",
        "ActionRelayFunction",
        "RulePollerFunction",
        "EvaluatorFunction",
    }
    for name in ("AggregatorFunction", "ActionRelayFunction", "RulePollerFunction"):
        assert found[name].layers == (powertools, shared)
    assert found["EvaluatorFunction"].layers == (powertools, shared, pandas)
    assert {(f.module, f.handler) for f in found.values()} == {("app", "lambda_handler")}


def test_a_layer_with_no_stand_in_is_an_error_not_a_silent_pass() -> None:
    template = load_template(ROOT / "template.yaml")
    template["Globals"]["Function"]["Layers"].append("arn:aws:lambda:us-east-1:123456789012:layer:other:1")
    with pytest.raises(ArtifactError, match="no local stand-in for layer"):
        functions(template, ROOT, stand_in)


@pytest.mark.parametrize(
    ("imports", "missing"),
    [("pia_no_such_dependency", "pia_no_such_dependency"), ("pytest", "pytest")],
    ids=["not-installed-anywhere", "only-in-the-virtualenv"],
)
def test_a_handler_needing_a_module_lambda_lacks_fails_naming_it(
    tmp_path: Path, imports: str, missing: str
) -> None:
    (tmp_path / "app.py").write_text(
        f"import {imports}\n\ndef lambda_handler(event, context):\n    return event\n"
    )
    outcome = check(Function("Broken", tmp_path, "app", "lambda_handler", ()), sys.executable, tmp_path)
    assert not outcome.ok
    assert f"missing module {missing!r}" in outcome.detail


def test_a_handler_with_everything_it_needs_passes(tmp_path: Path) -> None:
    layer = tmp_path / "layer" / "python"
    layer.mkdir(parents=True)
    (layer / "shared_thing.py").write_text("VALUE = 1\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(
        "import shared_thing\n\ndef lambda_handler(event, context):\n    return event\n"
    )
    outcome = check(
        Function("Fine", code, "app", "lambda_handler", (tmp_path / "layer",)), sys.executable, tmp_path
    )
    assert outcome.ok, outcome.detail
