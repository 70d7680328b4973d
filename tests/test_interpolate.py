"""Prompt interpolation: one pass, JSON and code left alone, unknown names refused."""

from __future__ import annotations

import base64

import pytest

from nbllm._cells.interpolate import interpolate
from nbllm._exceptions import InterpolationError


class Point:
    x = 3

    def __init__(self) -> None:
        self.label = "p"


NAMESPACE = {
    "name": "Ada",
    "n": 7,
    "pi": 3.14159,
    "point": Point(),
    "row": {"city": "Oslo", "temps": [1, 2, 3]},
    "items": ["a", "b"],
    "sneaky": "{name}",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {name}", "Hello Ada"),
        ("{n} items", "7 items"),
        ("{point.x} and {point.label}", "3 and p"),
        ("{row[city]} {row['city']} {row[temps][0]}", "Oslo Oslo 1"),
        ("{items[1]}", "b"),
        ("{pi:.2f}", "3.14"),
        ("{items!r}", "['a', 'b']"),
        ("{{name}} is literal", "{name} is literal"),
        ("{{}} stays as braces", "{} stays as braces"),
        ('JSON: {"a": 1, "b": {"c": [1, 2]}}', 'JSON: {"a": 1, "b": {"c": [1, 2]}}'),
        ("code: def f(): return {x: 1 for x in y}", "code: def f(): return {x: 1 for x in y}"),
        ("set: { }", "set: { }"),
        ("value holding braces: {sneaky}", "value holding braces: {name}"),
        ("no placeholders", "no placeholders"),
    ],
)
def test_interpolation_cases(template: str, expected: str) -> None:
    assert interpolate(template, NAMESPACE).text == expected


def test_nested_json_closing_braces_are_not_unescaped() -> None:
    text = '{"outer": {"inner": {"deep": true}}}'
    assert interpolate(text, {}).text == text


def test_unknown_name_is_named_with_the_ways_out() -> None:
    with pytest.raises(InterpolationError) as caught:
        interpolate("Tell me about {missing_var}", NAMESPACE)
    message = str(caught.value)
    assert "missing_var" in message
    assert "{{missing_var}}" in message and "--no-interp" in message


@pytest.mark.parametrize(("template", "fragment"), [("{point.nope}", ".nope"), ("{row[zzz]}", "[zzz]")])
def test_failing_attribute_or_key_names_the_step(template: str, fragment: str) -> None:
    with pytest.raises(InterpolationError, match=r"failed at") as caught:
        interpolate(template, NAMESPACE)
    assert fragment in str(caught.value)


def test_bad_format_spec_is_an_interpolation_error() -> None:
    with pytest.raises(InterpolationError, match="format"):
        interpolate("{name:.2f}", NAMESPACE)


class FakeImage:
    def _repr_png_(self) -> bytes:
        return b"\x89PNG fake"


def test_an_image_value_becomes_an_image_part() -> None:
    result = interpolate("Describe {picture}", {"picture": FakeImage()})
    assert result.text == "Describe [image 1: picture]"
    content = result.content()
    assert isinstance(content, list)
    assert content[0] == {"type": "text", "text": "Describe [image 1: picture]"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == b"\x89PNG fake"


def test_text_only_prompt_content_is_a_string() -> None:
    assert interpolate("plain", {}).content() == "plain"
