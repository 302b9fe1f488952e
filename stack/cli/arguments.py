"""Argument types for the subcommands: a bad value is a usage error (exit 2) that names the
argument, says what it expects and shows what it got, before anything connects.

argparse turns an ``ArgumentTypeError`` into ``celery-stack X: error: argument --y: ...``;
any other exception from a type function would read "invalid <function> value".
"""

from __future__ import annotations

import json
import math
from argparse import ArgumentTypeError
from collections.abc import Callable
from typing import Any


def _json(text: str, expected: str, example: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArgumentTypeError(
            f"expected {expected} in JSON, e.g. {example}, got {text!r} ({exc})"
        ) from None
    except RecursionError:
        raise ArgumentTypeError(f"expected {expected} in JSON: it is nested too deeply") from None


def json_list(text: str) -> list[Any]:
    """``--args``: a JSON list (an object would pass its keys as arguments)."""
    value = _json(text, "a list", "'[1, \"a\"]'")
    if not isinstance(value, list):
        raise ArgumentTypeError(
            f"expected a JSON list of positional arguments, e.g. '[1, \"a\"]', got {text!r} "
            "(keyword arguments go in --kwargs)"
        )
    return value


def json_object(text: str) -> dict[str, Any]:
    """``--kwargs``: a JSON object."""
    value = _json(text, "an object", "'{\"rows\": 3}'")
    if not isinstance(value, dict):
        raise ArgumentTypeError(
            f"expected a JSON object of keyword arguments, e.g. '{{\"rows\": 3}}', got {text!r} "
            "(positional arguments go in --args)"
        )
    return value


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (no upper bound when None)."""
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise ArgumentTypeError(f"expected a whole number {span}, got {text!r}")
        return value

    return parse


def bounded_float(
    low: float, high: float | None = None, *, low_open: bool = False
) -> Callable[[str], float]:
    """A finite number above ``low`` (``low_open``) or from it, up to ``high``."""
    above = f"above {low:g}" if low_open else f"of at least {low:g}"
    span = f"{above} and at most {high:g}" if high is not None else above

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise ArgumentTypeError(f"expected a number {span}, got {text!r}")
        return value

    return parse


positive_seconds = bounded_float(0, low_open=True)
