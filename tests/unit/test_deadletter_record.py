"""The DeadLetter record: serialization, description of exceptions, rendering; task helpers."""

from __future__ import annotations

from stack.deadletter import DeadLetter, Replay, render_record, render_records
from stack.settings import Settings
from stack.task import (
    FIRST_FAILURE_HEADER,
    RATE_SLOT_HEADER,
    carried_headers,
    logical_queue,
    origin,
)


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


def test_a_record_survives_a_json_round_trip_with_every_field():
    original = record(replays=[Replay(task_id="t-2", at=2000.0)])
    assert DeadLetter.model_validate_json(original.model_dump_json()) == original


def test_every_record_gets_its_own_id_distinct_from_the_task_id():
    first, second = record(), record()
    assert first.id != second.id and first.id != first.task_id


def test_an_exception_is_described_by_importable_type_message_and_traceback():
    try:
        raise KeyError("missing")
    except KeyError as exc:
        builtin = DeadLetter.describe(exc)
    assert builtin[0] == "KeyError" and builtin[1] == "'missing'" and "KeyError" in builtin[2]
    assert DeadLetter.describe(Custom("x"))[0] == f"{__name__}.Custom"


def test_a_records_status_line_names_the_error_and_why_it_was_not_retried():
    assert record().error == "ValueError: bad row (gave up after 4 attempts)"


def test_rendering_shows_one_line_per_record_and_every_field_of_one():
    listing = render_records([record(), record(task_id="t-9")], total=5)
    assert "2 shown of 5" in listing and listing.count("files.process_csv") == 2
    shown = render_record(record(replays=[Replay(task_id="t-2", at=2000.0)]))
    assert "file_processing" in shown and "t-2" in shown and shown.endswith("ValueError: bad row")
    assert render_records([], total=0) == "no dead letters (of 0)"


def test_a_retry_goes_back_where_the_message_came_from():
    assert origin({"routing_key": "gw0.default", "priority": 3}) == ("gw0.default", 3)
    assert origin({"routing_key": "q", "priority": None}) == ("q", 6)  # unmarked: normal
    assert origin(None) == (None, 6)


def test_the_logical_queue_drops_the_test_prefix():
    settings = Settings.load(environ={"STACK_QUEUE_PREFIX": "gw0."})
    assert logical_queue(settings, "gw0.file_processing") == "file_processing"
    assert logical_queue(settings, None) == "default"


def test_a_republished_task_keeps_its_headers_but_not_a_stale_rate_slot():
    headers = {"tenant": "a", RATE_SLOT_HEADER: 12.5, FIRST_FAILURE_HEADER: 3.0}
    assert carried_headers(headers) == {"tenant": "a", FIRST_FAILURE_HEADER: 3.0}
    assert carried_headers(None, x=1) == {"x": 1}


def test_arguments_json_cannot_carry_are_stored_as_their_repr():
    stored = DeadLetter.model_validate_json(record(args=[{1, 2}], kwargs={"at": object}).to_json())
    assert stored.args == ["{1, 2}"] and stored.kwargs["at"] == repr(object)
