"""Rate parsing and where a task's limit comes from."""

from __future__ import annotations

import pytest

from stack.errors import SettingsError
from stack.ratelimit import Grant, Rate, RateLimiter, rate_for, rate_limits
from stack.settings import Settings


@pytest.mark.parametrize(
    ("text", "limit", "period_s"),
    [
        ("5/s", 5, 1.0),
        ("100/m", 100, 60.0),
        ("3/h", 3, 3600.0),
        ("2/d", 2, 86_400.0),
        ("10/5s", 10, 5.0),
        ("7", 7, 1.0),
        (" 5 / s ", 5, 1.0),
        (4, 4, 1.0),
    ],
)
def test_rates_are_written_like_celerys(text, limit, period_s):
    assert Rate.parse(text) == Rate(limit, period_s)


@pytest.mark.parametrize("text", ["", "0/s", "-1/s", "five/s", "5/x", "5/2", "5/0s", "s/5"])
def test_malformed_rates_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match=r"e\.g\. 5/s|unit|positive"):
        Rate.parse(text)


def test_a_rate_spaces_its_slots_evenly_over_its_guard_window():
    five = Rate.parse("5/s")
    assert five.guard_s == pytest.approx(1.02)
    assert five.interval_s == pytest.approx(0.204)
    assert Rate.parse("30/m").interval_s == pytest.approx(60.02 / 30)


def test_the_guard_margin_stays_small_against_the_spacing():
    assert Rate.parse("5/s").guard_margin_s == pytest.approx(0.02)
    assert Rate.parse("100/s").guard_margin_s == pytest.approx(0.001)


def test_short_waits_are_held_in_the_worker_long_ones_are_not():
    assert Rate.parse("5/s").hold_s == pytest.approx(0.1)
    assert Rate.parse("100/s").hold_s == pytest.approx(0.005005)
    assert Rate.parse("10/m").hold_s == pytest.approx(0.1)


class ScriptedLimiter(RateLimiter):
    """The limiter with its Lua call replaced by a script of answers (no Redis)."""

    def __init__(self, answers: list[Grant]) -> None:
        self.answers, self.calls = answers, []

    def acquire(self, name, rate, reserved_s=None):
        self.calls.append(reserved_s)
        return self.answers.pop(0)


def test_a_short_wait_is_slept_then_the_reserved_slot_claimed():
    limiter = ScriptedLimiter([Grant(False, 10.05, 10.0), Grant(True, 10.05, 10.05)])
    slept = []
    grant = limiter.acquire_or_hold("t", Rate.parse("5/s"), sleep=slept.append)
    assert grant.granted and slept == [pytest.approx(0.05)] and limiter.calls == [None, 10.05]


def test_a_long_wait_is_left_to_the_broker():
    limiter = ScriptedLimiter([Grant(False, 11.0, 10.0)])
    slept = []
    grant = limiter.acquire_or_hold("t", Rate.parse("5/s"), sleep=slept.append)
    assert not grant.granted and grant.wait_s == pytest.approx(1.0) and slept == []


def test_a_grant_says_how_long_to_wait():
    assert Grant(False, at_s=10.5, now_s=10.0).wait_s == pytest.approx(0.5)
    assert Grant(True, at_s=10.0, now_s=10.0).wait_s == 0.0


class Task:
    def __init__(self, name: str, global_rate_limit: str | None = None) -> None:
        self.name, self.global_rate_limit = name, global_rate_limit


def test_settings_override_the_limit_written_on_the_task():
    settings = Settings.load(environ={"STACK_RATE_LIMITS": "a.b=2/s"})
    assert rate_for(settings, Task("a.b", "9/s")) == Rate(2, 1.0)
    assert rate_for(settings, Task("c.d", "9/s")) == Rate(9, 1.0)
    assert rate_for(settings, Task("e.f")) is None


def test_a_malformed_limit_names_its_source():
    bad = Settings.load(environ={}).model_copy(update={"rate_limits": {"a.b": "fast"}})
    with pytest.raises(SettingsError, match=r"STACK_RATE_LIMITS: a\.b"):
        rate_limits(bad)
    with pytest.raises(SettingsError, match="global_rate_limit of task x"):
        rate_for(Settings.load(environ={}), Task("x", "lots"))
