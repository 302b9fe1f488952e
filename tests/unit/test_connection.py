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


SENTINEL_ENV = {
    "REDIS_URL": "sentinel://127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0",
    "STACK_SENTINEL_MASTER": "mymaster",
}


def test_the_master_password_reaches_the_first_sentinel_entry_where_kombu_reads_it():
    from stack.connection import url_with_password

    settings = Settings.load(environ={**SENTINEL_ENV, "STACK_REDIS_PASSWORD": "p@ss"})
    assert url_with_password(settings.broker_url, settings) == (
        "sentinel://:p%40ss@127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0"
    )


def test_sentinel_transport_options_name_the_master_and_carry_the_sentinel_password():
    from stack.connection import sentinel_transport_options

    settings = Settings.load(environ={**SENTINEL_ENV, "STACK_SENTINEL_PASSWORD": "s3"})
    options = sentinel_transport_options(settings, settings.broker_url)
    assert options["master_name"] == "mymaster"
    assert options["sentinel_kwargs"]["password"] == "s3"
    assert sentinel_transport_options(settings, "redis://h:6379/0") == {}


def test_the_app_gets_sentinel_options_for_the_broker_and_our_sentinel_backend():
    from stack.app_factory import broker_settings

    conf = broker_settings(Settings.load(environ=SENTINEL_ENV))
    assert conf["broker_transport_options"]["master_name"] == "mymaster"
    assert conf["result_backend_transport_options"]["master_name"] == "mymaster"
    assert conf["result_backend"].startswith(
        "stack.result_backend:StackSentinelBackend+sentinel://"
    )


def test_no_master_from_the_sentinels_is_one_short_line_naming_their_settings():
    from redis.sentinel import MasterNotFoundError

    from stack.connection import problem

    exc = MasterNotFoundError(
        "No master found for 'mymaster' : <redis.client.Redis(<...port=1...>)> - "
        "network:ConnectionError, <redis.client.Redis(<...>)> - AuthenticationError"
    )
    said = problem(exc)
    assert said.startswith("no sentinel named a master 'mymaster'")
    assert "AuthenticationError, ConnectionError" in said
    assert "STACK_SENTINEL_MASTER" in said and "STACK_SENTINEL_PASSWORD" in said
    assert "redis.client" not in said


def test_a_sentinel_error_becomes_broker_unavailable_naming_the_sentinels_redacted():
    error = unavailable(
        redis.ConnectionError("refused"), "sentinel://:pw@h:1/0;sentinel://h:2/0", "`dlq list`"
    )
    assert "no Redis master through the sentinels sentinel://:***@h:1/0" in str(error)
    assert "pw" not in str(error).replace("PASSWORD", "")
