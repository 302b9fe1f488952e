"""The Redis boundary: one error tuple, one redaction, one message shape."""

from __future__ import annotations

import kombu.exceptions
import pytest
import redis

from stack.connection import REDIS_ERRORS, redact, translated, unavailable, url_with_password
from stack.errors import BrokerUnavailable
from stack.settings import Settings


def test_redact_hides_the_password_and_keeps_user_host_port_and_db():
    assert redact("redis://app:s3cret@10.0.0.5:6380/2") == "redis://app:***@10.0.0.5:6380/2"
    assert redact("rediss://:s3cret@cache:6379/0") == "rediss://:***@cache:6379/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("slow"),
        kombu.exceptions.OperationalError("gone"),
        ConnectionRefusedError("refused"),
        TimeoutError("slow"),
    ],
)
def test_every_kind_of_redis_silence_is_one_broker_unavailable(error):
    assert isinstance(error, REDIS_ERRORS)
    with pytest.raises(BrokerUnavailable) as raised, translated("redis://:pw@h:1/0", "the test"):
        raise error
    assert raised.value.__cause__ is error


def test_the_message_names_the_redis_the_action_the_cause_and_the_variable():
    message = str(unavailable(redis.ConnectionError("refused"), "redis://:pw@h:1/0", "the test"))
    assert message == (
        "Redis at redis://:***@h:1/0 did not answer the test (ConnectionError: refused); "
        "is it running? Check REDIS_URL"
    )


def test_other_errors_pass_through_untranslated():
    with pytest.raises(ValueError), translated("redis://h:1/0", "the test"):
        raise ValueError("not Redis")


def test_the_password_setting_reaches_a_url_that_names_none():
    settings = Settings.load(environ={"STACK_REDIS_PASSWORD": "p@ss/word"})
    assert url_with_password("redis://h:6379/0", settings) == "redis://:p%40ss%2Fword@h:6379/0"
    assert url_with_password("redis://:own@h:6379/0", settings) == "redis://:own@h:6379/0"
