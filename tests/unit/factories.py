"""Objects the unit tests build again and again."""

from __future__ import annotations

from typing import Any

from stack.deadletter import DeadLetter


def dead_letter(**fields: Any) -> DeadLetter:
    """A complete dead letter; ``fields`` override its values."""
    base = {
        "task_id": "t-1",
        "name": "files.process_csv",
        "args": [1, "two"],
        "kwargs": {"three": [3]},
        "queue": "file_processing",
        "priority": "high",
        "exception_type": "builtins.ValueError",
        "exception_message": "bad row",
        "traceback": "Traceback ...\nValueError: bad row",
        "reason": "gave up after 4 attempts",
        "attempts": 4,
        "first_failure_at": 1000.0,
        "last_failure_at": 1060.5,
        "worker": "w1@host",
    }
    return DeadLetter(**{**base, **fields})
