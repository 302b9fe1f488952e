"""The DeadLetter record: serialization, description of exceptions, its status line."""

from __future__ import annotations

from stack.deadletter import DeadLetter, Replay
from tests.unit.factories import dead_letter as record


class Custom(Exception):
    pass


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


def test_arguments_json_cannot_carry_are_stored_as_their_repr():
    stored = DeadLetter.model_validate_json(record(args=[{1, 2}], kwargs={"at": object}).to_json())
    assert stored.args == ["{1, 2}"] and stored.kwargs["at"] == repr(object)
