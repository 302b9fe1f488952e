"""RetryPolicy: the schedule, the budget, jitter, the errors that never retry, start-up checks."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from stack.errors import SettingsError
from stack.retry import NonRetryableError, RetryPolicy, validate
from stack.settings import Settings

POLICY = RetryPolicy(delays_s=(60.0, 300.0, 900.0), max_retries=3)


class Flaky(Exception):
    pass


class Permanent(ValueError):
    pass


def settings(**env: str) -> Settings:
    return Settings.load(environ=env)


def test_each_retry_waits_its_scheduled_delay():
    assert [POLICY.decide(Flaky(), n).countdown_s for n in range(3)] == [60.0, 300.0, 900.0]


def test_retries_past_the_schedule_wait_its_last_delay():
    policy = RetryPolicy(delays_s=(1.0, 2.0), max_retries=5)
    assert [policy.delay_s(n) for n in range(5)] == [1.0, 2.0, 2.0, 2.0, 2.0]


def test_three_retries_mean_four_attempts_then_give_up():
    assert all(POLICY.decide(Flaky(), n).retry for n in range(3))
    final = POLICY.decide(Flaky(), 3)
    assert not final.retry and final.reason == "gave up after 4 attempts"


def test_jitter_spreads_a_delay_evenly_around_it():
    policy = RetryPolicy(delays_s=(100.0,), max_retries=1, jitter=0.1)
    assert policy.delay_s(0, rand=lambda: 0.0) == pytest.approx(90.0)
    assert policy.delay_s(0, rand=lambda: 0.5) == pytest.approx(100.0)
    assert policy.delay_s(0, rand=lambda: 1.0) == pytest.approx(110.0)


@pytest.mark.parametrize(
    "exc",
    [NonRetryableError("no"), SoftTimeLimitExceeded(), type("Sub", (NonRetryableError,), {})()],
)
def test_non_retryable_errors_give_up_on_the_first_attempt(exc):
    decision = POLICY.decide(exc, 0)
    assert not decision.retry and "not retryable" in decision.reason


def test_a_task_can_name_errors_that_never_retry_and_errors_that_do():
    task = type("T", (), {"never_retry": (Permanent,), "retry_on": (Flaky, Permanent)})()
    policy = RetryPolicy.from_settings(settings(), task)
    assert not policy.is_retryable(Permanent())
    assert policy.is_retryable(Flaky())
    assert not policy.is_retryable(KeyError())


def test_policy_comes_from_settings_unless_the_task_overrides_it():
    env = settings(STACK_RETRY_DELAYS="1,2", STACK_MAX_RETRIES="5", STACK_RETRY_JITTER="0.2")
    assert RetryPolicy.from_settings(env) == RetryPolicy((1.0, 2.0), 5, 0.2)
    task = type("T", (), {"retry_delays_s": (7.0,), "max_retries": 1})()
    policy = RetryPolicy.from_settings(env, task)
    assert (policy.delays_s, policy.max_retries) == ((7.0,), 1)


def test_start_up_refuses_a_delay_at_or_above_the_visibility_timeout():
    with pytest.raises(SettingsError, match=r"STACK_RETRY_DELAYS.*STACK_VISIBILITY_TIMEOUT"):
        validate(settings(STACK_RETRY_DELAYS="60,3600", STACK_VISIBILITY_TIMEOUT="3600"))


def test_start_up_counts_jitter_against_the_visibility_timeout():
    env = settings(STACK_RETRY_DELAYS="3000", STACK_RETRY_JITTER="0.25")
    with pytest.raises(SettingsError, match="STACK_RETRY_JITTER"):
        validate(env)


def test_start_up_accepts_the_seeds_schedule():
    validate(settings())  # 60/300/900 s under the default one-hour visibility timeout


def test_a_task_override_is_named_when_refused():
    with pytest.raises(SettingsError, match="retry_delays_s of task x"):
        validate(settings(), (5000.0,), source="retry_delays_s of task x")
