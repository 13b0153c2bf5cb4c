"""Check that what ``sam build`` produced imports in python3.13 with nothing but what Lambda gives it.

Tests run on the project's virtualenv, which has every package; a function in Lambda has only its
task root, its layers under ``/opt/python`` and the runtime's own boto3. A module the shared layer
forgot, or a package only the virtualenv has, passes every test and fails every cold start. So each
function's handler module is imported in a fresh python3.13 process whose path holds exactly:

- the function's built code (``.aws-sam/build/<Function>``), as Lambda's task root;
- each of its layers, Globals' and its own, as SAM merges them: the shared layer from the build
  output; a public layer resolved from AWS (Powertools, AWS SDK for pandas) stood in locally by the
  same pinned package version installed from PyPI, without the runtime's own packages;
- boto3 at ``RUNTIME_SDK``, standing in for the runtime's.

Stand-ins are cached by version under ``.venv-layers/``. They are this machine's wheels, not arm64:
the check is about which modules are there, and compiled modules must load here to be imported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

RUNTIME = "python3.13"
RUNTIME_SDK = ("boto3==1.35.0", "botocore==1.35.0")
"""The project's boto3 floor (pyproject). The python3.13 runtime launched in November 2024 with boto3
1.35 and has only moved up since, so importing against the floor can only be stricter."""

PUBLIC_LAYERS = {
    "/aws/service/powertools/python/": ("powertools", "aws-lambda-powertools[tracer]=={PowertoolsVersion}"),
    "/aws/service/aws-sdk-pandas/": ("sdk-pandas", "awswrangler=={PandasVersion}"),
}
"""SSM parameter prefix of a public layer -> stand-in name and the package it carries. Powertools'
layer carries every extra; ``[tracer]`` is the one the code uses, so the stand-in is never kinder."""

IMPORT_PROBE = """
import importlib, sys, traceback
paths, module, handler = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
sys.path[:0] = paths
try:
    loaded = importlib.import_module(module)
except ModuleNotFoundError as exc:
    print(f"missing module {exc.name!r}: {exc}")
    traceback.print_exc()
    sys.exit(1)
except Exception as exc:
    print(f"{type(exc).__name__} on import: {exc}")
    traceback.print_exc()
    sys.exit(1)
if not callable(getattr(loaded, handler, None)):
    print(f"{module} has no callable {handler}")
    sys.exit(1)
shown = {"boto3", "aws_xray_sdk", "pandas"} & {m.split(".")[0] for m in sys.modules}
print("loaded " + ", ".join(sorted(shown)))
"""


class ArtifactError(RuntimeError):
    """The built template names something this check cannot stand in or find."""


@dataclass(frozen=True)
class Function:
    name: str
    code_dir: Path
    module: str
    handler: str
    layers: tuple[Path, ...]


@dataclass(frozen=True)
class Outcome:
    function: str
    ok: bool
    detail: str
    seconds: float
    log: str = ""


def load_template(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = yaml_parse(path.read_text())
    return parsed


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: str(spec.get("Default", ""))
        for name, spec in template.get("Parameters", {}).items()
        if isinstance(spec, Mapping)
    }


def _value(node: Any, template: Mapping[str, Any], parameters: Mapping[str, str]) -> Any:
    """The few intrinsics the layer lists use, evaluated with the parameters' defaults."""
    if not isinstance(node, Mapping) or len(node) != 1:
        return node
    ((function, argument),) = node.items()
    if function == "Ref":
        return parameters.get(argument, {"Ref": argument})
    if function == "Fn::Sub" and isinstance(argument, str):
        return re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: parameters.get(m[1], m[0]), argument)
    if function == "Fn::Equals":
        left, right = (_value(a, template, parameters) for a in argument)
        return left == right
    if function == "Fn::Not":
        return not _value(argument[0], template, parameters)
    if function == "Condition":
        return _value(template["Conditions"][argument], template, parameters)
    if function == "Fn::If":
        condition, when_true, when_false = argument
        chosen = when_true if _value(template["Conditions"][condition], template, parameters) else when_false
        return _value(chosen, template, parameters)
    return node


def _layer_sources(
    template: Mapping[str, Any], layers: Sequence[Any], build_dir: Path
) -> Iterator[Path | tuple[str, str]]:
    """A local layer's built directory, or a public layer's (stand-in name, requirement)."""
    parameters = parameter_defaults(template)
    resources = template.get("Resources", {})
    for layer in layers:
        if isinstance(layer, Mapping) and set(layer) == {"Ref"} and layer["Ref"] in resources:
            resource = resources[layer["Ref"]]
            if resource.get("Type") != "AWS::Serverless::LayerVersion":
                raise ArtifactError(
                    f"layer {layer['Ref']} is a {resource.get('Type')}, not a layer built here"
                )
            yield build_dir / resource["Properties"]["ContentUri"]
            continue
        value = _value(layer, template, parameters)
        known = [spec for prefix, spec in PUBLIC_LAYERS.items() if isinstance(value, str) and prefix in value]
        if not known:
            raise ArtifactError(f"no local stand-in for layer {json.dumps(layer)} (resolved to {value!r})")
        name, requirement = known[0]
        yield name, requirement.format(**parameters)


def functions(
    template: Mapping[str, Any], build_dir: Path, stand_in: Callable[[str, str], Path]
) -> list[Function]:
    """Every function of the built template, its layers resolved to directories (``stand_in`` maps
    a public layer's name and requirement to its stand-in directory)."""
    defaults = template.get("Globals", {}).get("Function", {})
    found: list[Function] = []
    for name, resource in sorted(template.get("Resources", {}).items()):
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        runtime = props.get("Runtime", defaults.get("Runtime"))
        if runtime != RUNTIME:
            raise ArtifactError(f"{name} runs on {runtime}; this check stands in {RUNTIME} only")
        module, _, handler = str(props.get("Handler", defaults.get("Handler", ""))).rpartition(".")
        layers: list[Path] = []
        for source in _layer_sources(
            template, [*defaults.get("Layers", []), *props.get("Layers", [])], build_dir
        ):
            layers.append(source if isinstance(source, Path) else stand_in(*source))
        found.append(Function(name, build_dir / props["CodeUri"], module, handler, tuple(layers)))
    return found


def layer_paths(layer: Path) -> list[Path]:
    """Where Lambda looks inside ``/opt`` for a layer's Python packages."""
    candidates = [layer / "python" / "lib" / RUNTIME / "site-packages", layer / "python"]
    return [p for p in candidates if p.is_dir()]


class StandIns:
    """Package directories installed once per requirement with python3.13's pip, reused after."""

    def __init__(self, python: str, root: Path) -> None:
        self._python = python
        self._root = root

    def _slug(self, requirement: str) -> str:
        return re.sub(r"[^A-Za-z0-9.]+", "-", requirement).strip("-")

    def install(self, name: str, requirements: Sequence[str], without: Path | None = None) -> Path:
        target = self._root / f"{name}-{self._slug(' '.join(requirements))}"
        if (target / ".complete").exists():
            return target
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        pip = subprocess.run(
            [
                self._python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--root-user-action=ignore", "--no-compile", "--only-binary=:all:",
                "--target", str(staging / "python"), *requirements,
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if pip.returncode != 0:
            raise ArtifactError(
                f"cannot install the {name} stand-in ({' '.join(requirements)}):\n{pip.stderr}"
            )
        if without is not None:
            _remove_provided(staging / "python", without)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        (target / ".complete").touch()
        return target

    def runtime(self) -> Path:
        return self.install("runtime", RUNTIME_SDK) / "python"

    def layer(self, name: str, requirement: str) -> Path:
        return self.install(name, (requirement,), without=self.runtime())


def _project(dist_info: Path) -> str:
    return re.sub(r"[-_.]+", "-", dist_info.name.split("-", 1)[0]).lower()


def _remove_provided(site: Path, provider: Path) -> None:
    """Drop from ``site`` every package ``provider`` (the runtime) has. Lambda puts layers before the
    runtime on the path, so a copy left in a stand-in would hide a module the runtime lacks."""
    provided = {_project(d) for d in provider.glob("*.dist-info")}
    for dist_info in site.glob("*.dist-info"):
        if _project(dist_info) not in provided:
            continue
        for line in (dist_info / "RECORD").read_text().splitlines():
            first = line.split(",", 1)[0].split("/", 1)[0]
            top = site / first
            if first in ("", ".", ".."):
                continue
            if top.is_dir():
                shutil.rmtree(top)
            elif top.exists():
                top.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
    shutil.rmtree(site / "bin", ignore_errors=True)


def check(function: Function, python: str, runtime_sdk: Path) -> Outcome:
    paths = [function.code_dir, *(p for layer in function.layers for p in layer_paths(layer)), runtime_sdk]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "LAMBDA_TASK_ROOT": str(function.code_dir),
    }
    started = time.monotonic()
    result = subprocess.run(
        [python, "-I", "-S", "-B", "-c", IMPORT_PROBE, *map(str, paths), function.module, function.handler],
        capture_output=True,
        text=True,
        env=env,
        cwd=function.code_dir,
        check=False,
    )
    seconds = time.monotonic() - started
    if result.returncode == 0:
        return Outcome(function.name, True, f"{function.module} imports; {result.stdout.strip()}", seconds)
    said = result.stdout.strip().splitlines() or result.stderr.strip().splitlines()[-1:] or ["no output"]
    return Outcome(function.name, False, f"{function.module}: {said[0]}", seconds, result.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="a python3.13 interpreter")
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument("--cache", type=Path, default=Path(".venv-layers"))
    args = parser.parse_args(argv)
    built = args.build_dir / "template.yaml"
    if not built.exists():
        print(f"{built} not found: run `make build` first", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    stand_ins = StandIns(args.python, args.cache.resolve())
    started = time.monotonic()
    try:
        runtime_sdk = stand_ins.runtime()
        found = functions(load_template(built), args.build_dir.resolve(), stand_ins.layer)
    except ArtifactError as exc:
        print(f"built artifacts: {exc}", file=sys.stderr)
        return 1
    prepared = time.monotonic() - started
    outcomes = [check(function, args.python, runtime_sdk) for function in found]
    for outcome in outcomes:
        mark = "ok  " if outcome.ok else "FAIL"
        print(f"{mark} {outcome.function}: {outcome.detail} [{outcome.seconds:.1f} s]")
        if not outcome.ok:
            print(outcome.log, file=sys.stderr)
    failed = [o for o in outcomes if not o.ok]
    total = time.monotonic() - started
    print(
        f"built artifacts: {len(outcomes) - len(failed)} of {len(outcomes)} functions import under {RUNTIME} "
        f"with only their layers and the runtime's boto3 "
        f"(stand-ins ready in {prepared:.1f} s, {total:.1f} s in all)"
    )
    return 1 if failed or not outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
