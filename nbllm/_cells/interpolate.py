"""`{name}` interpolation of a prompt from the user's namespace, in one pass.

Rules (chosen so that JSON and code pasted into a prompt arrive unchanged):

- ``{name}``, ``{name.attr}``, ``{name[key]}`` and chains of them are replaced by the
  value's ``str()``; ``!r`` / ``!s`` / ``!a`` and a format spec without spaces work as
  in f-strings (``{pi:.2f}``, ``{items!r}``).
- ``{{text}}`` gives ``{text}`` literally (the escape for a placeholder you do not want).
- Anything else in braces (``{"a": 1}``, ``{x: 1}``, ``{ }``) is left exactly as written.
- A placeholder whose name is not defined is an error naming it.
- Values are inserted once and never scanned again, so a value holding ``{x}`` stays as is.
- A value that renders as an image (``_repr_png_`` / ``_repr_jpeg_``, as IPython's
  ``Image`` and PIL images do, or a matplotlib figure) becomes an image part of the message,
  scaled down to at most `MAX_IMAGE_SIDE` pixels a side.
- Any other value without a conversion or format spec is put in as context at the cell's
  level (`nbllm._cells.summaries`): a DataFrame as a compact summary, not its ``str()``.
  A conversion or spec (``{df!s}``, ``{x:.2f}``) formats the value as written.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbllm._cells.summaries import DEFAULT_CONTEXT_TOKENS, ContextLevel, ContextPart, describe
from nbllm._constants import MAX_PLACEHOLDER_CHARS
from nbllm._exceptions import InterpolationError

MAX_IMAGE_SIDE = 1024
"""Images are scaled down to this many pixels on their longer side: enough for a model to read
a chart, and a bounded size on the wire (when Pillow is there to scale them)."""

_NAME = r"[A-Za-z_]\w*"
_INDEX = r"\[[^\[\]{}]*\]"
_FIELD = rf"{_NAME}(?:\.{_NAME}|{_INDEX})*"
_PLACEHOLDER = re.compile(
    r"\{\{(?P<escaped>[^{}]*)\}\}"  # {{text}} -> {text}
    rf"|\{{(?P<field>{_FIELD})(?:!(?P<conversion>[rsa]))?(?::(?P<spec>[^{{}}\s]*))?\}}"
)
_STEP = re.compile(rf"\.(?P<attr>{_NAME})|\[(?P<key>[^\]]*)\]")


@dataclass(frozen=True)
class ImagePart:
    """An image to send with the prompt (as a data URL)."""

    mime: str
    data: bytes

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class Interpolated:
    text: str
    images: list[ImagePart] = field(default_factory=list)
    parts: list[ContextPart] = field(default_factory=list)
    """What each placeholder put in, as what kind of context (the dry run lists them)."""

    def content(self) -> str | list[dict[str, Any]]:
        """Message content: the text, or text and image parts for a vision model."""
        if not self.images:
            return self.text
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.text}]
        parts += [{"type": "image_url", "image_url": {"url": image.data_url()}} for image in self.images]
        return parts


_HOW_TO_ESCAPE = "write {{%s}} for literal braces, or add --no-interp to send the cell as written"


def _lookup(field_text: str, namespace: Mapping[str, Any]) -> Any:
    name = re.match(_NAME, field_text)
    assert name is not None  # the placeholder pattern guarantees it
    if name.group() not in namespace:
        raise InterpolationError(
            f"the prompt refers to {{{field_text}}} but no variable {name.group()!r} is defined; "
            f"define it first, or {_HOW_TO_ESCAPE % field_text}"
        )
    value = namespace[name.group()]
    for step in _STEP.finditer(field_text, name.end()):
        try:
            if step.group("attr") is not None:
                value = getattr(value, step.group("attr"))
            else:
                value = value[_index_key(step.group("key"))]
        except (AttributeError, LookupError, TypeError) as exc:
            raise InterpolationError(
                f"the prompt's {{{field_text}}} failed at {step.group()!r}: {type(exc).__name__}: {exc}; "
                f"fix the expression, or {_HOW_TO_ESCAPE % field_text}"
            ) from None
    return value


def _index_key(text: str) -> Any:
    """As in str.format: digits are an int index; quotes may be used around a string key."""
    stripped = text.strip()
    if re.fullmatch(r"-?\d+", stripped):
        return int(stripped)
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        return stripped[1:-1]
    return stripped


def _as_image(value: Any) -> ImagePart | None:
    if isinstance(value, (str, bytes, int, float)):
        return None
    if type(value).__module__.startswith("matplotlib.") and callable(getattr(value, "savefig", None)):
        return _figure_png(value)
    for method, mime in (("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg")):
        render = getattr(value, method, None)
        if callable(render):
            data = render()
            if isinstance(data, tuple):  # IPython allows (data, metadata)
                data = data[0]
            if isinstance(data, str):
                data = base64.b64decode(data)
            if isinstance(data, bytes) and data:
                return scaled(ImagePart(mime, data))
    return None


def _figure_png(figure: Any) -> ImagePart:
    """A matplotlib figure as PNG, at a resolution whose longer side is `MAX_IMAGE_SIDE`."""
    width, height = figure.get_size_inches()
    dpi = min(100.0, MAX_IMAGE_SIDE / max(width, height, 0.1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return ImagePart("image/png", buffer.getvalue())


def scaled(image: ImagePart) -> ImagePart:
    """`image` scaled down to `MAX_IMAGE_SIDE` a side when Pillow is there (else as it is)."""
    try:
        from PIL import Image
    except ImportError:
        return image
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            if max(opened.size) <= MAX_IMAGE_SIDE:
                return image
            opened.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
            buffer = io.BytesIO()
            kind = "PNG" if image.mime == "image/png" else "JPEG"
            opened.save(buffer, format=kind)
    except OSError:  # not an image Pillow reads: sent as the object rendered it
        return image
    return ImagePart(image.mime, buffer.getvalue())


def interpolate(
    template: str,
    namespace: Mapping[str, Any],
    *,
    level: ContextLevel = "sample",
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
) -> Interpolated:
    """Fill `template`'s placeholders from `namespace` (see the module docstring); values go
    in as context at `level`, each in about `context_tokens`."""
    images: list[ImagePart] = []
    parts: list[ContextPart] = []

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped") is not None:
            return "{" + match.group("escaped") + "}"
        field_text = match.group("field")
        value = _lookup(field_text, namespace)
        image = _as_image(value) if level != "schema" else None
        if image is not None:
            images.append(image)
            parts.append(ContextPart(field_text, f"image ({len(image.data):,} bytes)", ""))
            return f"[image {len(images)}: {field_text}]"
        conversion = match.group("conversion")
        if conversion is None and not match.group("spec"):
            part = describe(value, field_text, level, context_tokens)
            _check_size(match.group(), part.text, level)
            parts.append(part)
            # A summary of several lines (tables) stands as its own block, so the prompt's
            # words after it do not join its last row.
            return f"\n\n{part.text}\n\n" if "\n" in part.text and part.kind != "text" else part.text
        if conversion == "r":
            value = repr(value)
        elif conversion == "a":
            value = ascii(value)
        elif conversion == "s":
            value = str(value)
        try:
            text = format(value, match.group("spec") or "")
        except (ValueError, TypeError) as exc:
            raise InterpolationError(
                f"the prompt's {match.group()} could not be formatted: {exc}; "
                f"fix the format spec, or {_HOW_TO_ESCAPE % field_text}"
            ) from None
        _check_size(match.group(), text, level)
        parts.append(ContextPart(field_text, "formatted", text))
        return text

    text = _PLACEHOLDER.sub(replace, template)
    return Interpolated(text.strip("\n") if parts else text, images, parts)


def _check_size(placeholder: str, text: str, level: ContextLevel) -> None:
    if len(text) > MAX_PLACEHOLDER_CHARS:
        summary = "drop --context full to send a summary instead, or " if level == "full" else ""
        raise InterpolationError(
            f"the prompt's {placeholder} renders to {len(text):,} characters (about "
            f"{len(text) // 4:,} tokens); one placeholder may put at most {MAX_PLACEHOLDER_CHARS:,} "
            "into a prompt, so nothing was sent",
            hint=f"{summary}put a part or a summary of it in a variable first (text[:2000], df.head(20))",
        )
