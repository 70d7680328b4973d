"""Python functions as tools: schemas from signatures and docstrings, validated calls."""

from __future__ import annotations

import pytest

from nbllm._calls.results import ToolCall
from nbllm._cells.tools import Tool, error_text, outcome_text, tools_from_names
from nbllm._exceptions import ToolError


def get_weather(city: str, unit: str = "celsius", days: int = 1) -> dict[str, object]:
    """Look up the weather forecast.

    Args:
        city: The city name, e.g. Paris.
        unit: celsius or fahrenheit.
    """
    return {"city": city, "unit": unit, "days": days, "temp": 21}


def add(a: float, b: float) -> float:
    """Add two numbers.

    :param a: the first number
    :param b: the second number
    """
    return a + b


def test_schema_from_signature_and_google_docstring() -> None:
    schema = Tool.from_callable(get_weather).schema()
    function = schema["function"]
    assert schema["type"] == "function" and function["name"] == "get_weather"
    assert function["description"] == "Look up the weather forecast."
    parameters = function["parameters"]
    assert parameters["required"] == ["city"]
    assert parameters["properties"]["city"] == {"type": "string", "description": "The city name, e.g. Paris."}
    assert parameters["properties"]["days"]["type"] == "integer"
    assert parameters["properties"]["unit"]["default"] == "celsius"


def test_sphinx_docstring_params() -> None:
    properties = Tool.from_callable(add).schema()["function"]["parameters"]["properties"]
    assert properties["a"]["description"] == "the first number"
    assert properties["b"]["type"] == "number"


def test_bind_validates_and_converts_arguments() -> None:
    tool = Tool.from_callable(get_weather)
    thunk = tool.bind(ToolCall("c1", "get_weather", '{"city": "Oslo", "days": "3"}'))
    assert thunk() == {"city": "Oslo", "unit": "celsius", "days": 3, "temp": 21}


def test_bad_arguments_raise_a_readable_error() -> None:
    tool = Tool.from_callable(get_weather)
    with pytest.raises(Exception) as caught:
        tool.bind(ToolCall("c1", "get_weather", '{"days": "many"}'))
    text = error_text(caught.value)
    assert text.startswith("error: invalid arguments:")
    assert "city" in text and "days" in text


def test_lookup_errors_name_the_problem() -> None:
    with pytest.raises(ToolError, match="no such function"):
        tools_from_names(["nope"], {})
    with pytest.raises(ToolError, match="not a function"):
        tools_from_names(["x"], {"x": 3})
    assert list(tools_from_names(["add"], {"add": add})) == ["add"]


def test_lambda_names_are_refused() -> None:
    with pytest.raises(ToolError, match="letters, digits"):
        Tool.from_callable(lambda x: x)


@pytest.mark.parametrize(
    ("value", "expected"), [("plain", "plain"), ({"a": 1}, '{"a": 1}'), (3.5, "3.5"), ([1, "x"], '[1, "x"]')]
)
def test_outcome_text(value: object, expected: str) -> None:
    assert outcome_text(value) == expected


def test_long_results_are_cut_and_say_so() -> None:
    text = outcome_text("x" * 30_000)
    assert len(text) < 21_000 and "cut: the result had 30000 characters" in text
