"""`celery-stack dlq` rendering: one line per record, every field of one."""

from __future__ import annotations

from stack.cli.dead_letters import render_record, render_records
from stack.deadletter import Replay
from tests.unit.factories import dead_letter as record


def test_rendering_shows_one_line_per_record_and_every_field_of_one():
    listing = render_records([record(), record(task_id="t-9")], total=5)
    assert "2 shown of 5" in listing and listing.count("files.process_csv") == 2
    shown = render_record(record(replays=[Replay(task_id="t-2", at=2000.0)]))
    assert "file_processing" in shown and "t-2" in shown and shown.endswith("ValueError: bad row")
    assert render_records([], total=0) == "no dead letters (of 0)"
