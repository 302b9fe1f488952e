"""Rate parsing and where a task's limit comes from."""

from __future__ import annotations

import pytest

from stack.errors import SettingsError
from stack.ratelimit import Grant, Rate, rate_for, rate_limits
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


def test_a_rate_spaces_its_grants_evenly():
    assert Rate.parse("5/s").interval_s == pytest.approx(0.2)
    assert Rate.parse("30/m").interval_s == pytest.approx(2.0)


def test_the_guard_margin_stays_small_against_the_spacing():
    assert Rate.parse("5/s").guard_margin_s == pytest.approx(0.05)
    assert Rate.parse("100/s").guard_margin_s == pytest.approx(0.0025)


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
    bad = Settings.load(environ={"STACK_RATE_LIMITS": "a.b=fast"})
    with pytest.raises(SettingsError, match=r"STACK_RATE_LIMITS: a\.b"):
        rate_limits(bad)
    with pytest.raises(SettingsError, match="global_rate_limit of task x"):
        rate_for(Settings.load(environ={}), Task("x", "lots"))
