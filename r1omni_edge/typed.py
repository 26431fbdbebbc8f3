"""Plain data (parsed JSON or YAML) checked against a dataclass's type hints, every problem named by its key.

The bundle manifest and the training configs are files users can edit by hand; a wrong type deep inside them must
come back as "parts.vision.precision: expected a string, got 3", not as a TypeError from wherever the value is
first used. Supported annotations: str, int, float, bool, Any, ``X | None``, ``list[X]``, ``dict[str, X]``,
``Literal[...]`` and nested dataclasses. Torch-free.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Literal


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    kinds = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}
    kind = next((name for cls, name in kinds.items() if type(value) is cls), type(value).__name__)
    shown = repr(value) if not isinstance(value, (list, dict)) else kind
    return shown if shown == kind else f"{shown} ({kind})"


def _expected(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is str:
        return "a string"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "an object"
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(hint))
    return str(hint)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_value(hint: Any, value: Any, key: str) -> tuple[Any, list[str]]:
    """-> (the value converted where the hint says so: nested dataclasses built, ints widened to floats; problems)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value, []
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None, []
        for option in options:
            if option is type(None):
                continue
            converted, problems = check_value(option, value, key)
            if not problems:
                return converted, []
        return value, [f"{key}: expected {_expected(hint)}, got {_describe(value)}"]
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    wrong = [f"{key}: expected {_expected(hint)}, got {_describe(value)}"]
    if hint is bool:
        return value, [] if isinstance(value, bool) else wrong
    if hint is int:
        return value, [] if isinstance(value, int) and not isinstance(value, bool) else wrong
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok and isinstance(value, str) and _is_number(value):  # YAML 1.1 reads 1e-3 (no dot) as text
            wrong = [f"{wrong[0]}; write it as {float(value)!r} (YAML reads {value} as text)"]
        return (float(value) if ok else value), [] if ok else wrong
    if hint is str:
        return value, [] if isinstance(value, str) else wrong
    if origin is Literal:
        return value, [] if value in typing.get_args(hint) else wrong
    if origin is list:
        if not isinstance(value, list):
            return value, wrong
        (item_hint,) = typing.get_args(hint) or (Any,)
        items, problems = [], []
        for index, item in enumerate(value):
            converted, found = check_value(item_hint, item, f"{key}[{index}]")
            items.append(converted)
            problems += found
        return items, problems
    if origin is dict:
        if not isinstance(value, dict):
            return value, wrong
        key_hint, item_hint = typing.get_args(hint) or (str, Any)
        items, problems = {}, []
        for name, item in value.items():
            if key_hint is str and not isinstance(name, str):
                problems.append(f"{key}: key {name!r} is not a string")
            converted, found = check_value(item_hint, item, f"{key}.{name}")
            items[name] = converted
            problems += found
        return items, problems
    raise TypeError(f"{key}: unsupported annotation {hint!r}")


def build(cls: type, data: Any, key: str = "") -> tuple[Any, list[str]]:
    """Build ``cls`` from a dict: missing required fields, unknown fields and wrong types all become problems
    (``key.field: ...``). Returns (the instance, or None when there were problems; the problems)."""
    where = f"{key}." if key else ""
    if not isinstance(data, dict):
        return None, [f"{key or 'the file'}: expected an object, got {_describe(data)}"]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    problems = [f"{where}{name}: unknown field (known: {', '.join(fields)})" for name in data if name not in fields]
    values = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                problems.append(f"{where}{name}: missing")
            continue
        values[name], found = check_value(hints[name], data[name], f"{where}{name}")
        problems += found
    if problems:
        return None, problems
    return cls(**values), []


# Value ranges for ``range_problems``: (test, what the value must be).
Range = tuple[Callable[[Any], bool], str]
POSITIVE: Range = (lambda value: value > 0, "greater than 0")


def at_least(low: float) -> Range:
    return (lambda value: value >= low, f"at least {low:g}")


def between(low: float, high: float) -> Range:
    return (lambda value: low <= value <= high, f"between {low:g} and {high:g}")


def range_problems(obj: Any, ranges: dict[str, Range], choices: dict[str, tuple]) -> list[str]:
    """``field: must be ..., got ...`` for each field of ``obj`` outside its range or its choices."""
    problems = [f"{name}: must be {what}, got {getattr(obj, name)}" for name, (test, what) in ranges.items()
                if not test(getattr(obj, name))]
    problems += [f"{name}: {getattr(obj, name)!r} is not one of {', '.join(map(str, options))}"
                 for name, options in choices.items() if getattr(obj, name) not in options]
    return problems
