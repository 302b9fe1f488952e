"""Celery states onto the seed's status vocabulary, and what each status carries."""

from __future__ import annotations

import json

import pytest

from stack.api.rendering import render_json
from stack.task_status import build_status, describe_error, status_of_state, wire_value


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("PENDING", "pending"),
        ("RECEIVED", "processing"),
        ("STARTED", "processing"),
        ("RETRY", "retrying"),
        ("SUCCESS", "success"),
        ("FAILURE", "failure"),
        ("REVOKED", "failure"),
        ("PROGRESS", "processing"),  # a custom state a task sets while it runs
    ],
)
def test_each_celery_state_maps_to_one_seed_status(state, status):
    assert status_of_state(state) == status


def test_success_carries_the_result_and_no_error():
    status = build_status("t1", "SUCCESS", {"rows": 3}, None)

    assert status.model_dump() == {
        "task_id": "t1",
        "status": "success",
        "result": {"rows": 3},
        "error": None,
    }


def test_failure_carries_the_exception_type_and_message_not_a_result():
    status = build_status("t1", "FAILURE", ValueError("bad row 3"), None)

    assert (status.status, status.result, status.error) == (
        "failure",
        None,
        "ValueError: bad row 3",
    )


def test_retrying_carries_the_error_of_the_last_attempt():
    status = build_status("t1", "RETRY", RuntimeError("flaky"), None)

    assert (status.status, status.error) == ("retrying", "RuntimeError: flaky")


def test_processing_hides_the_workers_pid_and_hostname():
    status = build_status("t1", "STARTED", {"pid": 12, "hostname": "w@h"}, None)

    assert (status.status, status.result, status.error) == ("processing", None, None)


def test_a_dead_letter_record_wins_over_celerys_failure():
    status = build_status("t1", "FAILURE", ValueError("x"), "ValueError: x (after 4 attempts)")

    assert (status.status, status.error) == ("dead_lettered", "ValueError: x (after 4 attempts)")


def test_an_exception_without_a_message_is_described_by_its_type():
    assert describe_error(KeyError()) == "KeyError"
    assert describe_error(None) is None
    assert describe_error("already text") == "already text"


def test_a_result_json_lacks_numbers_for_comes_back_as_their_names_not_null():
    nan, inf = float("nan"), float("inf")
    status = build_status("t1", "SUCCESS", [nan, inf, -inf, {"k": (nan, 1.5)}], None)

    assert status.result == ["NaN", "Infinity", "-Infinity", {"k": ["NaN", 1.5]}]
    assert wire_value({"a": [1, "x", None]}) == {"a": [1, "x", None]}


def test_the_api_writes_a_lone_surrogate_as_an_escape_that_reads_back_the_same():
    body = render_json({"result": ["\ud800", "café", float("nan")]})

    assert body == b'{"result":["\\ud800","caf\\u00e9","NaN"]}'
    assert json.loads(body) == {"result": ["\ud800", "café", "NaN"]}
