"""Restart rules: the policy, the budget within its window, the backoff, the variables."""

import pytest

from stack.errors import SettingsError
from stack.launcher.restart import (
    BACKOFF_MAX_S,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_POLICY,
    DEFAULT_WINDOW_S,
    Budget,
    Policy,
    Rule,
    describe_exit,
    rules_from_environ,
    service_variable,
)


def test_the_backoff_doubles_from_a_tenth_of_a_second_and_is_capped():
    budget = Budget(Rule(Policy.ALWAYS, max_restarts=10, window_s=1000))
    delays = [budget.on_exit(1, now=float(i)).delay_s for i in range(7)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]
    assert budget.on_exit(1, now=7).delay_s == BACKOFF_MAX_S


def test_the_budget_is_spent_by_max_restarts_within_the_window():
    budget = Budget(Rule(Policy.ON_FAILURE, max_restarts=2, window_s=60))
    assert budget.on_exit(1, now=0).restart
    assert budget.on_exit(1, now=10).attempt == 2
    spent = budget.on_exit(1, now=20)
    assert (spent.restart, spent.fatal) == (False, True)
    assert "restart budget exhausted (2 restarts within 60 s" in spent.reason


def test_restarts_older_than_the_window_no_longer_count_and_the_backoff_resets():
    budget = Budget(Rule(Policy.ON_FAILURE, max_restarts=2, window_s=60))
    budget.on_exit(1, now=0)
    budget.on_exit(1, now=10)
    later = budget.on_exit(1, now=200)
    assert (later.restart, later.attempt, later.delay_s) == (True, 1, 0.1)


def test_on_failure_restarts_a_crash_or_a_signal_but_not_a_clean_exit():
    rule = Rule(Policy.ON_FAILURE)
    assert Budget(rule).on_exit(-9, now=0).restart
    assert Budget(rule).on_exit(2, now=0).restart
    clean = Budget(rule).on_exit(0, now=0)
    assert (clean.restart, clean.fatal) == (False, False)


def test_always_restarts_a_clean_exit_and_no_restarts_nothing_and_fails():
    assert Budget(Rule(Policy.ALWAYS)).on_exit(0, now=0).restart
    never = Budget(Rule(Policy.NO)).on_exit(-9, now=0)
    assert (never.restart, never.fatal, never.reason) == (False, True, "restart policy no")


def test_a_death_by_signal_is_named():
    assert describe_exit(-9) == "rc=-9, SIGKILL"
    assert describe_exit(1) == "rc=1"
    assert describe_exit(137) == "rc=137, SIGKILL"  # the shell's report of its command
    assert describe_exit(2) == "rc=2"


def test_the_defaults_without_any_variable():
    rules = rules_from_environ({}, ["redis", "worker"])
    assert rules["worker"] == Rule(DEFAULT_POLICY, DEFAULT_MAX_RESTARTS, DEFAULT_WINDOW_S)
    assert (DEFAULT_POLICY, DEFAULT_MAX_RESTARTS, DEFAULT_WINDOW_S) == (Policy.ON_FAILURE, 5, 60)


def test_a_per_service_policy_overrides_the_default_one():
    environ = {
        "STACK_RESTART_POLICY": "no",
        "STACK_RESTART_POLICY_WORKER": "Always",
        "STACK_RESTART_MAX": "3",
        "STACK_RESTART_WINDOW": "30",
    }
    rules = rules_from_environ(environ, ["redis", "worker"])
    assert rules["redis"] == Rule(Policy.NO, 3, 30.0)
    assert rules["worker"] == Rule(Policy.ALWAYS, 3, 30.0)


def test_a_service_variable_has_the_name_upper_cased_with_dashes_as_underscores():
    assert service_variable("my-api") == "STACK_RESTART_POLICY_MY_API"


def test_every_bad_restart_variable_is_named_in_one_error():
    environ = {
        "STACK_RESTART_POLICY": "sometimes",
        "STACK_RESTART_MAX": "-1",
        "STACK_RESTART_WINDOW": "0",
    }
    with pytest.raises(SettingsError) as refused:
        rules_from_environ(environ, ["worker"])
    message = str(refused.value)
    assert (
        "STACK_RESTART_POLICY: expected one of always, on-failure, no (got 'sometimes')" in message
    )
    assert "STACK_RESTART_MAX: expected a whole number >= 0 (got '-1')" in message
    assert "STACK_RESTART_WINDOW: expected seconds > 0 (got '0')" in message
