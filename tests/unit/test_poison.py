"""The poison guard's verdict on real kombu messages, before any worker or Redis is involved."""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import Celery
from kombu import Message

from stack.arguments import MAX_ARGUMENT_DEPTH
from stack.poison import MISFIT, TOO_DEEP, UNDECODABLE, Poison, arguments_of, find_poison


@pytest.fixture(scope="module")
def echo() -> Any:
    app = Celery("poison-unit", set_as_current=False)

    @app.task(name="unit.echo", shared=False)
    def echo(value: Any = None) -> Any:
        return value

    return echo


def message(body: Any, content_type: str = "application/json", **headers: Any) -> Message:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message(
        body=raw,
        content_type=content_type,
        content_encoding="utf-8",
        headers={"id": "t-1", "task": "unit.echo", **headers},
        accept={"application/json"},  # as a consumer prepares accept_content=["json"]
    )


def verdict(msg: Message, task: Any) -> Poison | None:
    return find_poison(msg, None, task)


def test_a_well_formed_message_that_fits_the_task_is_no_poison(echo):
    assert verdict(message([["x"], {}, {"callbacks": None}]), echo) is None
    assert verdict(message([[], {"value": 1}, None]), echo) is None


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"{not json", "application/json", "DecodeError"),
        (b"\x80\x04K\x01.", "application/x-python-serialize", "ContentDisallowed"),
        ({"x": 1}, "application/json", "InvalidTaskError"),
        ([[1], {}], "application/json", "InvalidTaskError"),
        ([{"a": 1}, {}, {}], "application/json", "InvalidTaskError"),
        ([[1], [], {}], "application/json", "InvalidTaskError"),
        ([[1], {}, 5], "application/json", "InvalidTaskError"),
        (7, "application/json", "InvalidTaskError"),
    ],
)
def test_a_body_that_does_not_decode_to_args_kwargs_embed_is_poison(
    echo, body, content_type, error
):
    poison = verdict(message(body, content_type), echo)
    assert poison is not None and poison.reason == UNDECODABLE
    assert type(poison.error).__name__ == error


def test_a_message_without_a_task_id_is_poison(echo):
    msg = Message(body=b"[[], {}, {}]", content_type="application/json", headers={"task": "x"})
    poison = verdict(msg, echo)
    assert poison is not None and "no task id" in str(poison.error)


def test_arguments_nested_too_deep_are_poison_and_not_kept(echo):
    deep: Any = 1
    for _ in range(MAX_ARGUMENT_DEPTH + 1):
        deep = [deep]
    poison = verdict(message([[deep], {}, {}]), echo)
    assert poison is not None and poison.reason == TOO_DEEP
    assert (poison.args, poison.kwargs) == ([], {})


def test_arguments_that_do_not_fit_the_signature_are_poison_with_the_type_error(echo):
    poison = verdict(message([[], {"bogus": 1}, {}]), echo)
    assert poison is not None and poison.reason == MISFIT
    assert isinstance(poison.error, TypeError) and "bogus" in str(poison.error)
    assert poison.kwargs == {"bogus": 1}
    assert verdict(message([[1, 2], {}, {}]), echo) is not None  # one positional too many


def test_a_protocol_1_body_is_read_as_a_mapping(echo):
    assert arguments_of({"args": [1], "kwargs": {"a": 2}}) == ([1], {"a": 2})
    assert find_poison(message(b""), {"id": "t", "args": [], "kwargs": {"x": 1}}, echo) is not None
