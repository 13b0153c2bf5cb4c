"""A strict local interpreter of the Amazon States Language subset template.yaml's state machines use.

moto stores a state machine but does not run this one (Lambda tasks, a Distributed Map reading S3),
so local runs interpret the definition read from template.yaml itself. Strict means: a state type,
field, resource, path or Choice rule outside the subset is refused when the definition is loaded
(so the template cannot drift into something only AWS would run), and the limits AWS enforces are
enforced here: 256 KB of state input or output, 25,000 history events per execution (each
Distributed Map child execution has its own), MaxConcurrency's range, Retry and Catch as declared.

Units run one after another (sequential is one of the orders MaxConcurrency allows); Retry's waits
are added up, not slept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

PAYLOAD_LIMIT = 262_144
"""Bytes of UTF-8 JSON a state's input or output may hold."""
HISTORY_LIMIT = 25_000
"""Events in one execution's history (Standard workflows)."""
MAX_CONCURRENCY_LIMIT = 10_000
"""Most child executions a Distributed Map runs at once."""
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
S3_GET = "arn:aws:states:::s3:getObject"
S3_PUT = "arn:aws:states:::s3:putObject"

_COMMON = {"Type", "Comment", "Next", "End", "InputPath", "OutputPath"}
_FIELDS = {
    "Task": _COMMON | {"Resource", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"},
    "Map": _COMMON
    | {
        "ItemReader",
        "ItemSelector",
        "ItemProcessor",
        "MaxConcurrency",
        "MaxConcurrencyPath",
        "ToleratedFailurePercentage",
        "ResultWriter",
        "ResultPath",
        "Retry",
        "Catch",
    },
    "Choice": {"Type", "Comment", "Choices", "Default", "InputPath", "OutputPath"},
    "Pass": _COMMON | {"Parameters", "Result", "ResultPath"},
    "Succeed": {"Type", "Comment", "InputPath", "OutputPath"},
    "Fail": {"Type", "Comment", "Error", "Cause", "CausePath"},
}
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "IsNull": lambda value, want: (value is None) == want,
    "IsPresent": lambda value, want: True,
    "NumericGreaterThan": lambda value, want: _number(value) and value > want,
    "NumericEquals": lambda value, want: _number(value) and value == want,
    "StringEquals": lambda value, want: isinstance(value, str) and value == want,
    "BooleanEquals": lambda value, want: isinstance(value, bool) and value == want,
}
_PATH = re.compile(r"^\$\$?(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_UNCATCHABLE = {"States.DataLimitExceeded", "States.Runtime"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class DefinitionError(ValueError):
    """The definition uses something this interpreter (and so the local run) does not cover."""


class StatesError(Exception):
    """A failure inside an execution, under the error name Step Functions would give it."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


Invoke = Callable[[str, Any], Any]
"""Call a Lambda function (ARN, payload) and return its result; raise :class:`StatesError` named
as the Lambda integration names it (the function's error type, or ``Lambda.*``)."""


@dataclass
class RunStats:
    executions: int = 0
    map_items: int = 0
    invocations: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    largest_payload: int = 0
    most_history_events: int = 0
    failed_children: int = 0


@dataclass
class Outcome:
    status: str
    output: Any = None
    error: str = ""
    cause: str = ""


@dataclass
class _Execution:
    name: str
    arn: str
    start: datetime
    events: int = 0
    item: Mapping[str, Any] = field(default_factory=dict)


def state_machine_definition(
    template: Mapping[str, Any], logical_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Definition, DefinitionSubstitutions) of ``logical_id`` in a parsed template."""
    resource = template.get("Resources", {}).get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::StateMachine":
        raise DefinitionError(f"the template has no AWS::Serverless::StateMachine {logical_id}")
    properties = resource.get("Properties", {})
    if "Definition" not in properties:
        raise DefinitionError(f"{logical_id}: only an inline Definition is interpreted locally")
    return dict(properties["Definition"]), dict(properties.get("DefinitionSubstitutions", {}))


def load_definition(path: Path, logical_id: str, resolve: Callable[[Any], str]) -> dict[str, Any]:
    """The state machine ``logical_id`` of a template file, each ``${Name}`` of its
    DefinitionSubstitutions replaced by ``resolve(value)``: the value as CloudFormation resolved it."""
    definition, declared = state_machine_definition(yaml_parse(path.read_text()), logical_id)
    text = json.dumps(definition)
    for name, value in declared.items():
        text = text.replace("${" + name + "}", resolve(value))
    left = re.findall(r"\$\{([A-Za-z0-9_]+)\}", text)
    if left:
        raise DefinitionError(f"{logical_id}: substitution {left[0]} is not declared")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class StateMachine:
    def __init__(
        self,
        definition: Mapping[str, Any],
        *,
        arn: str,
        invoke: Invoke,
        s3: Any,
        payload_limit: int = PAYLOAD_LIMIT,
        history_limit: int = HISTORY_LIMIT,
    ) -> None:
        _check_machine(definition, "definition")
        self.definition = definition
        self.arn = arn
        self._invoke = invoke
        self._s3 = s3
        self._payload_limit = payload_limit
        self._history_limit = history_limit
        self.stats = RunStats()

    def start(self, name: str, payload: Any, start: datetime | None = None) -> Outcome:
        """Run one execution to its end."""
        execution = _Execution(
            name, f"{self.arn.replace(':stateMachine:', ':execution:')}:{name}", start or datetime.now(UTC)
        )
        return self._run(self.definition, execution, payload)

    # ------------------------------------------------------------------ executions

    def _run(self, machine: Mapping[str, Any], execution: _Execution, payload: Any) -> Outcome:
        self.stats.executions += 1
        self._event(execution, 1)
        try:
            self._payload(payload, "execution input")
            output = self._states(machine, execution, payload)
        except StatesError as failure:
            self._event(execution, 1, final=True)
            return Outcome("FAILED", error=failure.error, cause=failure.cause)
        self._event(execution, 1, final=True)
        return Outcome("SUCCEEDED", output=output)

    def _event(self, execution: _Execution, count: int, *, final: bool = False) -> None:
        execution.events += count
        self.stats.most_history_events = max(self.stats.most_history_events, execution.events)
        if execution.events > self._history_limit and not final:
            raise StatesError(
                "States.Runtime",
                f"execution {execution.name} reached {self._history_limit} history events",
            )

    def _states(self, machine: Mapping[str, Any], execution: _Execution, payload: Any) -> Any:
        states = machine["States"]
        name = machine["StartAt"]
        data = payload
        while True:
            state = states[name]
            self._event(execution, 1)
            kind = state["Type"]
            if kind == "Fail":
                cause = self._path(state["CausePath"], data, execution) if "CausePath" in state else None
                raise StatesError(state.get("Error", "States.Fail"), str(cause or state.get("Cause", "")))
            effective = self._path(state.get("InputPath", "$"), data, execution)
            self._payload(effective, f"{name} input")
            if kind == "Choice":
                self._event(execution, 1)
                data, name = effective, self._choose(state, effective, execution)
                self._payload(data, f"{name} output")
                continue
            if kind == "Succeed":
                self._event(execution, 1)
                return self._path(state.get("OutputPath", "$"), effective, execution)
            try:
                data = self._act(name, state, effective, data, execution)
            except StatesError as failure:
                handler = _catcher(state, failure)
                if handler is None:
                    raise
                error = {"Error": failure.error, "Cause": failure.cause}
                data = self._place(handler.get("ResultPath", "$"), data, error)
                self._payload(data, f"{name} output")
                name = handler["Next"]
                continue
            self._event(execution, 1)
            self._payload(data, f"{name} output")
            if state.get("End"):
                return data
            name = state["Next"]

    def _act(
        self, name: str, state: Mapping[str, Any], effective: Any, raw: Any, execution: _Execution
    ) -> Any:
        kind = state["Type"]
        if kind == "Pass":
            result = (
                self._template(state["Parameters"], effective, execution)
                if "Parameters" in state
                else state.get("Result", effective)
            )
        elif kind == "Task":
            arguments = self._template(state.get("Parameters", {}), effective, execution)
            result = self._retrying(state, execution, lambda: self._task(arguments, execution))
        else:
            result = self._retrying(state, execution, lambda: self._map(name, state, effective, execution))
        if "ResultSelector" in state:
            result = self._template(state["ResultSelector"], result, execution)
        data = self._place(state.get("ResultPath", "$"), raw, result)
        return self._path(state.get("OutputPath", "$"), data, execution)

    def _retrying(self, state: Mapping[str, Any], execution: _Execution, attempt: Callable[[], Any]) -> Any:
        tries: dict[int, int] = {}
        while True:
            try:
                return attempt()
            except StatesError as failure:
                rules = state.get("Retry", [])
                index = next((i for i, r in enumerate(rules) if _matches(r["ErrorEquals"], failure)), None)
                if index is None:
                    raise
                rule = rules[index]
                done = tries.get(index, 0)
                if done >= rule.get("MaxAttempts", 3):
                    raise
                tries[index] = done + 1
                delay = rule.get("IntervalSeconds", 1) * rule.get("BackoffRate", 2.0) ** done
                self.stats.waited_seconds += min(delay, rule.get("MaxDelaySeconds", delay))
                self.stats.retries += 1
                self._event(execution, 3)

    def _task(self, arguments: Any, execution: _Execution) -> Any:
        self.stats.invocations += 1
        self._payload(arguments.get("Payload"), "the Lambda payload")
        self._event(execution, 3)
        result = self._invoke(arguments["FunctionName"], arguments.get("Payload"))
        return {"Payload": result, "StatusCode": 200, "ExecutedVersion": "$LATEST"}

    # ------------------------------------------------------------------ Map

    def _map(self, name: str, state: Mapping[str, Any], effective: Any, parent: _Execution) -> Any:
        reader = state["ItemReader"]
        where = self._template(reader["Parameters"], effective, parent)
        items = self._read_items(where["Bucket"], where["Key"])
        concurrency = (
            self._path(state["MaxConcurrencyPath"], effective, parent)
            if "MaxConcurrencyPath" in state
            else state.get("MaxConcurrency", 0)
        )
        if not _number(concurrency) or not 0 <= concurrency <= MAX_CONCURRENCY_LIMIT:
            raise StatesError("States.Runtime", f"{name}: MaxConcurrency {concurrency!r} is not 0..10000")
        processor = state["ItemProcessor"]
        run_id = f"{parent.name}-{name}"
        self._event(parent, 2)
        results: dict[str, list[dict[str, Any]]] = {"SUCCEEDED": [], "FAILED": []}
        for index, item in enumerate(items):
            self.stats.map_items += 1
            context = {"Value": item, "Index": index}
            child_input = (
                self._template(
                    state["ItemSelector"], effective, _Execution(**{**vars(parent), "item": context})
                )
                if "ItemSelector" in state
                else item
            )
            child = _Execution(f"{run_id}-{index:06d}", "", parent.start)
            child.arn = f"{self.arn.replace(':stateMachine:', ':execution:')}/{run_id}:{child.name}"
            outcome = self._run(processor, child, child_input)
            entry: dict[str, Any] = {
                "ExecutionArn": child.arn,
                "Name": child.name,
                "Input": json.dumps(child_input),
                "InputDetails": {"Included": True},
                "StateMachineArn": self.arn,
                "Status": outcome.status,
            }
            if outcome.status == "SUCCEEDED":
                entry.update(Output=json.dumps(outcome.output), OutputDetails={"Included": True})
            else:
                self.stats.failed_children += 1
                entry.update(Error=outcome.error, Cause=outcome.cause)
            results[outcome.status].append(entry)
        tolerated = state.get("ToleratedFailurePercentage", 0)
        if items and len(results["FAILED"]) * 100 > tolerated * len(items):
            raise StatesError(
                "States.ExceedToleratedFailureThreshold",
                f"{len(results['FAILED'])} of {len(items)} items failed",
            )
        if "ResultWriter" not in state:
            outputs = [json.loads(e.get("Output", "null")) for e in results["SUCCEEDED"]]
            return outputs
        writer = self._template(state["ResultWriter"]["Parameters"], effective, parent)
        return self._write_results(writer["Bucket"], writer.get("Prefix", ""), run_id, results)

    def _read_items(self, bucket: str, key: str) -> list[Any]:
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise StatesError("States.ItemReaderFailed", f"s3://{bucket}/{key}: {exc}") from None
        try:
            items = json.loads(body)
        except ValueError:
            raise StatesError("States.ItemReaderFailed", f"s3://{bucket}/{key} is not JSON") from None
        if not isinstance(items, list):
            raise StatesError("States.ItemReaderFailed", f"s3://{bucket}/{key} is not a JSON array")
        return items

    def _write_results(
        self, bucket: str, prefix: str, run_id: str, results: Mapping[str, list[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Step Functions' ResultWriter layout: one file per status and a manifest listing them."""
        base = f"{prefix.rstrip('/')}/{run_id}/" if prefix else f"{run_id}/"
        files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        try:
            for status, entries in results.items():
                if entries:
                    key = f"{base}{status}_0.json"
                    body = json.dumps(entries).encode()
                    self._s3.put_object(Bucket=bucket, Key=key, Body=body)
                    files[status].append({"Key": key, "Size": len(body)})
            manifest_key = f"{base}manifest.json"
            map_run = f"{self.arn.replace(':stateMachine:', ':mapRun:')}/{run_id}"
            manifest = {"DestinationBucket": bucket, "MapRunArn": map_run, "ResultFiles": files}
            self._s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
        except Exception as exc:
            raise StatesError("States.ResultWriterFailed", f"s3://{bucket}/{base}: {exc}") from None
        return {"MapRunArn": map_run, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key}}

    # ------------------------------------------------------------------ data

    def _payload(self, value: Any, where: str) -> None:
        size = _size(value)
        self.stats.largest_payload = max(self.stats.largest_payload, size)
        if size > self._payload_limit:
            raise StatesError(
                "States.DataLimitExceeded", f"{where} is {size} bytes, over the {self._payload_limit} limit"
            )

    def _path(self, path: str | None, data: Any, execution: _Execution) -> Any:
        if path is None:
            return {}
        if path.startswith("$$"):
            node: Any = {
                "Execution": {
                    "Name": execution.name,
                    "Id": execution.arn,
                    "StartTime": execution.start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                },
                "StateMachine": {"Id": self.arn},
                "Map": {"Item": execution.item},
            }
            steps = path[3:].split(".") if len(path) > 2 else []
        else:
            node, steps = data, path[2:].split(".") if len(path) > 1 else []
        for step in steps:
            if not isinstance(node, Mapping) or step not in node:
                raise StatesError("States.Runtime", f"the path {path} matched nothing in its input")
            node = node[step]
        return node

    def _template(self, template: Any, data: Any, execution: _Execution) -> Any:
        if isinstance(template, Mapping):
            built: dict[str, Any] = {}
            for key, value in template.items():
                if key.endswith(".$"):
                    built[key[:-2]] = self._path(value, data, execution)
                else:
                    built[key] = self._template(value, data, execution)
            return built
        if isinstance(template, list):
            return [self._template(value, data, execution) for value in template]
        return template

    @staticmethod
    def _place(path: str | None, data: Any, result: Any) -> Any:
        if path is None:
            return data
        if path == "$":
            return result
        steps = path[2:].split(".")
        placed = dict(data) if isinstance(data, Mapping) else {}
        node = placed
        for step in steps[:-1]:
            node[step] = dict(node[step]) if isinstance(node.get(step), Mapping) else {}
            node = node[step]
        node[steps[-1]] = result
        return placed

    def _choose(self, state: Mapping[str, Any], data: Any, execution: _Execution) -> str:
        for rule in state["Choices"]:
            variable = rule["Variable"]
            ((comparison, want),) = ((k, v) for k, v in rule.items() if k in _COMPARISONS)
            try:
                value = self._path(variable, data, execution)
                present = True
            except StatesError:
                if comparison != "IsPresent":
                    raise
                value, present = None, False
            if comparison == "IsPresent":
                if present == want:
                    return str(rule["Next"])
            elif _COMPARISONS[comparison](value, want):
                return str(rule["Next"])
        if "Default" not in state:
            raise StatesError("States.NoChoiceMatched", "no Choice rule matched and there is no Default")
        return str(state["Default"])


def _matches(names: Sequence[str], failure: StatesError) -> bool:
    if failure.error in _UNCATCHABLE:
        return False
    wildcards = {"States.ALL"} | ({"States.TaskFailed"} if failure.error != "States.Timeout" else set())
    return any(name == failure.error or name in wildcards for name in names)


def _catcher(state: Mapping[str, Any], failure: StatesError) -> Mapping[str, Any] | None:
    return next((c for c in state.get("Catch", []) if _matches(c["ErrorEquals"], failure)), None)


# ---------------------------------------------------------------------- validation


def _check_machine(machine: Mapping[str, Any], where: str) -> None:
    states = machine.get("States")
    if not isinstance(states, Mapping) or machine.get("StartAt") not in states:
        raise DefinitionError(f"{where}: StartAt must name one of its States")
    extra = set(machine) - {"Comment", "StartAt", "States", "ProcessorConfig"}
    if extra:
        raise DefinitionError(f"{where}: field {sorted(extra)[0]} is not interpreted locally")
    for name, state in states.items():
        _check_state(f"{where} state {name}", state, states)


def _check_state(where: str, state: Mapping[str, Any], states: Mapping[str, Any]) -> None:
    kind = state.get("Type")
    if kind not in _FIELDS:
        raise DefinitionError(f"{where}: Type {kind!r} is not interpreted locally")
    extra = set(state) - _FIELDS[kind]
    if extra:
        raise DefinitionError(f"{where}: field {sorted(extra)[0]} is not interpreted locally")
    targets = [state["Next"]] if "Next" in state else []
    targets += [c.get("Next") for c in state.get("Catch", [])]
    if kind == "Choice":
        targets += [rule.get("Next") for rule in state["Choices"]] + (
            [state["Default"]] if "Default" in state else []
        )
        for rule in state["Choices"]:
            comparisons = [k for k in rule if k in _COMPARISONS]
            if len(comparisons) != 1 or set(rule) - {"Variable", "Next", *comparisons}:
                raise DefinitionError(
                    f"{where}: a Choice rule must be Variable, Next and one of {sorted(_COMPARISONS)}"
                )
            _check_path(where, rule["Variable"])
    elif kind not in ("Succeed", "Fail") and ("Next" in state) == bool(state.get("End")):
        raise DefinitionError(f"{where}: exactly one of Next and End")
    for target in targets:
        if target not in states:
            raise DefinitionError(f"{where}: Next {target!r} is not a state")
    for key in ("InputPath", "OutputPath", "ResultPath", "MaxConcurrencyPath", "CausePath"):
        if key in state and state[key] is not None:
            _check_path(where, state[key])
    for key in ("Parameters", "ResultSelector", "ItemSelector"):
        _check_template(where, state.get(key, {}))
    for rule in (*state.get("Retry", []), *state.get("Catch", [])):
        if not rule.get("ErrorEquals"):
            raise DefinitionError(f"{where}: every Retry and Catch needs ErrorEquals")
    if kind == "Task" and state.get("Resource") != LAMBDA_INVOKE:
        raise DefinitionError(f"{where}: Resource {state.get('Resource')!r} is not interpreted locally")
    if kind == "Map":
        _check_map(where, state)


def _check_map(where: str, state: Mapping[str, Any]) -> None:
    reader = state.get("ItemReader", {})
    if reader.get("Resource") != S3_GET or reader.get("ReaderConfig", {}).get("InputType") != "JSON":
        raise DefinitionError(f"{where}: only an ItemReader of a JSON array in S3 is interpreted locally")
    _check_template(where, reader.get("Parameters", {}))
    processor = state.get("ItemProcessor", {})
    config = processor.get("ProcessorConfig", {})
    if config.get("Mode") != "DISTRIBUTED" or config.get("ExecutionType") != "STANDARD":
        raise DefinitionError(f"{where}: only a DISTRIBUTED Map of STANDARD child executions is interpreted")
    if "ResultWriter" in state:
        writer = state["ResultWriter"]
        if writer.get("Resource") != S3_PUT or set(writer) - {"Resource", "Parameters"}:
            raise DefinitionError(f"{where}: only a ResultWriter of Resource and Parameters is interpreted")
        _check_template(where, writer.get("Parameters", {}))
    _check_machine(processor, f"{where} ItemProcessor")


def _check_template(where: str, template: Any) -> None:
    if isinstance(template, Mapping):
        for key, value in template.items():
            if key.endswith(".$"):
                if not isinstance(value, str) or not _PATH.match(value):
                    raise DefinitionError(f"{where}: {key} {value!r} is not a path this interpreter reads")
            else:
                _check_template(where, value)
    elif isinstance(template, list):
        for value in template:
            _check_template(where, value)


def _check_path(where: str, path: Any) -> None:
    if not isinstance(path, str) or not _PATH.match(path):
        raise DefinitionError(f"{where}: {path!r} is not a path this interpreter reads")
