"""How deep task arguments may nest: one limit, checked by submit() and by the worker's guard.

Deep nesting breaks the readers of a task's arguments one after the other: the
prefork worker's main process pickles them for its pool child at two recursion
levels per nesting level, and at ~480 levels that raises RecursionError where
Celery exits the whole worker; pydantic's JSON parser (jiter) stops at 200
levels, so a dead letter carrying such arguments could not be read back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stack.errors import ArgumentsTooDeep

# Below every reader above with room to spare (the dead-letter record wraps arguments in two
# more levels); real arguments nest a handful of levels.
MAX_ARGUMENT_DEPTH = 100
# Exact types, as the decoders build them: a type lookup is ~3x cheaper than isinstance, and
# this walk runs on every message in the worker's main process.
CONTAINERS = frozenset({list, tuple, dict, set, frozenset})


def nesting_depth(value: Any, stop_after: int = MAX_ARGUMENT_DEPTH) -> int:
    """How many containers deep ``value`` nests (a scalar: 0, ``[1]``: 1).

    Level by level, without recursion, so a value too deep for the interpreter's
    stack is still measured; counting stops once past ``stop_after`` (a
    self-containing list stops there too). A container of scalars only is skipped
    at C speed.
    """
    level = [value] if type(value) in CONTAINERS else []
    depth = 0
    while level and depth <= stop_after:
        depth += 1
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            if not CONTAINERS.isdisjoint(map(type, children)):
                below += [child for child in children if type(child) in CONTAINERS]
        level = below
    return depth


def check_depth(
    args: Sequence[Any], kwargs: Mapping[str, Any], headers: Mapping[str, Any] | None = None
) -> None:
    """Raise ArgumentsTooDeep naming the first argument nested past MAX_ARGUMENT_DEPTH.

    A worker hands a message's headers to its pool as well: ``headers`` are checked alike.
    One walk over all of them (each value sits two levels down); names only on failure.
    """
    everything = (args, kwargs, headers or {})
    if nesting_depth(everything, MAX_ARGUMENT_DEPTH + 2) <= MAX_ARGUMENT_DEPTH + 2:
        return
    named = [(f"argument args[{i}]", value) for i, value in enumerate(args)]
    named += [(f"argument kwargs[{key!r}]", value) for key, value in kwargs.items()]
    named += [(f"header {key!r}", value) for key, value in (headers or {}).items()]
    for where, value in named:
        if nesting_depth(value) > MAX_ARGUMENT_DEPTH:
            raise ArgumentsTooDeep(
                f"{where} nests deeper than {MAX_ARGUMENT_DEPTH} levels "
                "(MAX_ARGUMENT_DEPTH: a prefork worker could not hand it to its pool, nor a "
                "dead letter carry it); flatten it, or pass a reference (a key, a path) instead"
            )
