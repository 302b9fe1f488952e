"""StackTask's pure helpers: where a retry or deferral goes, which headers it carries."""

from __future__ import annotations

import kombu.exceptions
import redis

from stack.queues import logical_name
from stack.settings import Settings
from stack.task import (
    FIRST_FAILURE_HEADER,
    RATE_SLOT_HEADER,
    carried_headers,
    is_outage,
    origin,
)


def test_a_retry_goes_back_where_the_message_came_from():
    assert origin({"routing_key": "gw0.default", "priority": 3}) == ("gw0.default", 3)
    assert origin({"routing_key": "q", "priority": None}) == ("q", 6)  # unmarked: normal
    assert origin(None) == (None, 6)


def test_the_logical_queue_drops_the_test_prefix():
    settings = Settings.load(environ={"STACK_QUEUE_PREFIX": "gw0."})
    assert logical_name(settings, "gw0.file_processing") == "file_processing"
    assert logical_name(settings, None) == "default"


def test_a_republished_task_keeps_its_headers_but_not_a_stale_rate_slot():
    headers = {"tenant": "a", RATE_SLOT_HEADER: 12.5, FIRST_FAILURE_HEADER: 3.0}
    assert carried_headers(headers) == {"tenant": "a", FIRST_FAILURE_HEADER: 3.0}
    assert carried_headers(None, x=1) == {"x": 1}


def test_only_a_retry_redis_did_not_take_counts_as_an_outage_worth_requeueing():
    assert is_outage(kombu.exceptions.OperationalError("connection refused"))
    assert is_outage(redis.ConnectionError("reset"))
    assert not is_outage(TypeError("echo() got an unexpected keyword argument 'bogus'"))
    assert not is_outage(kombu.exceptions.EncodeError("not JSON serializable"))
