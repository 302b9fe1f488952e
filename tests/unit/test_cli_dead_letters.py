"""The DeadLetter record: serialization, description of exceptions, rendering; task helpers."""

from __future__ import annotations

from stack.cli.dead_letters import render_record, render_records
from stack.deadletter import DeadLetter, Replay


class Custom(Exception):
    pass


def record(**fields) -> DeadLetter:
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


def test_rendering_shows_one_line_per_record_and_every_field_of_one():
    listing = render_records([record(), record(task_id="t-9")], total=5)
    assert "2 shown of 5" in listing and listing.count("files.process_csv") == 2
    shown = render_record(record(replays=[Replay(task_id="t-2", at=2000.0)]))
    assert "file_processing" in shown and "t-2" in shown and shown.endswith("ValueError: bad row")
    assert render_records([], total=0) == "no dead letters (of 0)"
