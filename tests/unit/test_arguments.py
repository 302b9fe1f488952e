"""The argument depth limit: how depth is counted, and the error naming the argument."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from stack.arguments import MAX_ARGUMENT_DEPTH, check_depth, nesting_depth
from stack.errors import ArgumentsTooDeep


def nested(depth: int, leaf: Any = "leaf") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        ("text", 0),
        (None, 0),
        ([], 1),
        ([1, "two"], 1),
        ({"a": [1, {"b": ()}]}, 4),
        ([[1], [[2]], 3], 3),
    ],
)
def test_depth_counts_containers_inside_containers(value, depth):
    assert nesting_depth(value) == depth


def test_a_value_deeper_than_the_interpreters_stack_is_still_measured():
    too_deep_for_recursion = sys.getrecursionlimit() * 2
    assert nesting_depth(nested(too_deep_for_recursion), stop_after=10**6) == too_deep_for_recursion


def test_counting_stops_past_the_limit_even_for_a_list_that_contains_itself():
    loop: list[Any] = []
    loop.append(loop)
    assert nesting_depth(loop, stop_after=5) == 6


def test_arguments_at_the_limit_pass_and_one_level_more_is_refused_by_name():
    check_depth([nested(MAX_ARGUMENT_DEPTH)], {"ok": nested(MAX_ARGUMENT_DEPTH)})
    with pytest.raises(ArgumentsTooDeep, match=r"kwargs\['rows'\] nests deeper than 100 levels"):
        check_depth([1], {"rows": nested(MAX_ARGUMENT_DEPTH + 1)})


def test_a_header_nested_past_the_limit_is_refused_by_name():
    with pytest.raises(ArgumentsTooDeep, match=r"header 'trace' nests deeper than"):
        check_depth([], {}, {"id": "t-1", "trace": nested(MAX_ARGUMENT_DEPTH + 1)})
