"""The stack's ``logLevel`` reaches Lambda's ``logging_config`` and ``BATCH_LOG_LEVEL`` (Lambdas
and worker tasks) in Lambda's spelling: ApplicationLogLevel accepts TRACE, DEBUG, INFO, WARN,
ERROR and FATAL only (Lambda API reference, LoggingConfig), and the handlers' threshold and
Lambda's filter must agree on the same value."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from components.config import ConfigError, parse_config
from components.offline import StackGraph
from jobcontract import Env

pytestmark = pytest.mark.xdist_group("pulumi")

LAMBDA_APPLICATION_LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
FUNCTION = "aws:lambda/function:Function"
TASK_DEF = "aws:ecs/taskDefinition:TaskDefinition"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("WARN", "WARN"),
        ("warn", "WARN"),
        ("WARNING", "WARN"),
        ("error", "ERROR"),
        ("DEBUG", "DEBUG"),
    ],
)
def test_log_level_is_stored_in_lambda_spelling(given: str, stored: str) -> None:
    config = parse_config({"logLevel": given}, project="ai-batch", stack="test")
    assert config.log_level == stored


def test_unknown_log_level_names_lambda_levels() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"logLevel": "VERBOSE"}, project="ai-batch", stack="test")
    assert "WARN," in info.value.allowed and "WARNING" in info.value.allowed


@pytest.mark.parametrize("given", ["WARNING", "WARN"])
def test_every_function_and_task_gets_lambda_spelling(
    given: str, evaluate: Callable[..., StackGraph]
) -> None:
    graph = evaluate("dev", {"ai-batch:logLevel": given})
    functions = graph.of_type(FUNCTION)
    assert len(functions) >= 4
    for fn in functions:
        logging = fn.inputs["loggingConfig"]
        assert logging["logFormat"] == "JSON"  # level filtering needs the JSON format
        assert logging["applicationLogLevel"] == "WARN", fn.name
        assert fn.inputs["environment"]["variables"][Env.LOG_LEVEL] == "WARN", fn.name
    tasks = graph.of_type(TASK_DEF)
    assert tasks
    for task in tasks:
        for container in json.loads(task.inputs["containerDefinitions"]):
            env = {e["name"]: e["value"] for e in container["environment"]}
            assert env[Env.LOG_LEVEL] == "WARN", task.name


def test_reference_stacks_use_valid_lambda_levels(
    dev_graph: StackGraph, prod_graph: StackGraph
) -> None:
    for graph in (dev_graph, prod_graph):
        for fn in graph.of_type(FUNCTION):
            level = fn.inputs["loggingConfig"]["applicationLogLevel"]
            assert level in LAMBDA_APPLICATION_LOG_LEVELS
            assert fn.inputs["environment"]["variables"][Env.LOG_LEVEL] == level
