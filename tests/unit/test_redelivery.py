"""RedeliveryCounter's keys and retention (the counting itself runs against Redis in test_crash)."""

from __future__ import annotations

import redis

from stack.redelivery import RedeliveryCounter
from stack.settings import Settings


def counter(**env: str) -> RedeliveryCounter:
    return RedeliveryCounter(redis.Redis(port=1), Settings.load(environ=env))


def test_each_attempt_of_a_task_is_counted_under_its_own_key():
    c = counter(STACK_KEY_PREFIX="p:")
    assert c.key("abc", 0) == "p:redeliveries:abc:0"
    assert c.key("abc", 1) != c.key("abc", 0)


def test_counts_outlive_the_cap_worth_of_visibility_timeouts():
    c = counter(STACK_VISIBILITY_TIMEOUT="100", STACK_MAX_REDELIVERIES="3")
    assert c.ttl_s == 100 * (3 + 2)
