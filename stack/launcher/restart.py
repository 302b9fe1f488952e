"""Restart policy: what `up` does when a service exits after it was ready.

A supervisor, not only a starter: a crashed service is restarted with
backoff while the others keep running; only a service that crashes more
than its budget allows (``max_restarts`` within ``window_s``) stops the
stack. Read from the environment `up` was given, like the Procfile's own
variables:

* ``STACK_RESTART_POLICY``: ``always``, ``on-failure`` (default) or ``no``, for every service;
* ``STACK_RESTART_POLICY_<NAME>``: the same, for one service (``STACK_RESTART_POLICY_WORKER``);
* ``STACK_RESTART_MAX``: restarts allowed per window (default 5);
* ``STACK_RESTART_WINDOW``: the window in seconds (default 60).
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from stack.errors import SettingsError


class Policy(StrEnum):
    ALWAYS = "always"  # restart on any exit, a clean one (rc 0) included
    ON_FAILURE = "on-failure"  # restart on a non-zero rc or a signal; a clean exit stays down
    NO = "no"  # never restart: the first exit after ready stops the stack (fail fast)


DEFAULT_POLICY = Policy.ON_FAILURE  # a crash is restarted; a service that chose to end stays down
DEFAULT_MAX_RESTARTS = 5  # five crashes within a minute are a crash loop, not bad luck ...
DEFAULT_WINDOW_S = 60.0  # ... and a crash an hour is worth a restart every time
BACKOFF_FIRST_S = 0.1  # Docker's first restart delay: a crash costs the boot, not a wait too ...
BACKOFF_MAX_S = 8.0  # ... doubling per restart in the window (0.1, 0.2, 0.4, 0.8, 1.6 s), capped

SHELL_SIGNAL_BASE = 128  # sh exits 128 + n when its command died of signal n
POLICY_VARIABLE = "STACK_RESTART_POLICY"
MAX_VARIABLE = "STACK_RESTART_MAX"
WINDOW_VARIABLE = "STACK_RESTART_WINDOW"


def service_variable(name: str) -> str:
    """``STACK_RESTART_POLICY_<NAME>``: upper-cased, '-' as '_' (a variable cannot hold '-')."""
    return f"{POLICY_VARIABLE}_" + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


@dataclass(frozen=True)
class Rule:
    """One service's restart rule."""

    policy: Policy = DEFAULT_POLICY
    max_restarts: int = DEFAULT_MAX_RESTARTS
    window_s: float = DEFAULT_WINDOW_S

    def describe(self) -> str:
        return f"policy {self.policy}, {self.max_restarts} restarts per {self.window_s:g} s"


@dataclass(frozen=True)
class Decision:
    """What to do about one exit: restart after ``delay_s``, or not (``reason`` says why)."""

    restart: bool
    reason: str
    delay_s: float = 0.0
    attempt: int = 0
    fatal: bool = False  # not restarted and stops the stack (policy no, budget exhausted)


def describe_exit(returncode: int) -> str:
    """``rc=1``; ``rc=-9, SIGKILL`` for a death by signal, ``rc=137, SIGKILL`` when the
    Procfile's shell reports its command's (128 + signal): what the operator looks up."""
    number = -returncode if returncode < 0 else returncode - SHELL_SIGNAL_BASE
    if returncode < 0 or SHELL_SIGNAL_BASE < returncode < SHELL_SIGNAL_BASE + signal.NSIG:
        with contextlib.suppress(ValueError):
            return f"rc={returncode}, {signal.Signals(number).name}"
    return f"rc={returncode}"


@dataclass
class Budget:
    """The restarts one service had recently: decides the next one, with backoff."""

    rule: Rule
    restarts: deque[float] = field(default_factory=deque)

    @property
    def count(self) -> int:
        """Restarts so far in this launch's recent window (as of the last decision)."""
        return len(self.restarts)

    def on_exit(self, returncode: int, now: float) -> Decision:
        """Decide about an exit after ready at monotonic time ``now``; records a restart."""
        rule = self.rule
        if rule.policy is Policy.NO:
            return Decision(False, "restart policy no", fatal=True)
        if returncode == 0 and rule.policy is Policy.ON_FAILURE:
            return Decision(False, "a clean exit, not restarted (policy on-failure)")
        while self.restarts and now - self.restarts[0] >= rule.window_s:
            self.restarts.popleft()
        if len(self.restarts) >= rule.max_restarts:
            return Decision(
                False,
                f"restart budget exhausted ({_restarts(len(self.restarts))} within "
                f"{rule.window_s:g} s; raise {MAX_VARIABLE} or {WINDOW_VARIABLE})",
                fatal=True,
            )
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** len(self.restarts))
        self.restarts.append(now + delay)
        attempt = len(self.restarts)
        return Decision(
            True,
            f"restart {attempt} of {rule.max_restarts} within {rule.window_s:g} s, "
            f"in {delay:g} s (policy {rule.policy})",
            delay_s=delay,
            attempt=attempt,
        )


def _restarts(count: int) -> str:
    return f"{count} restart{'' if count == 1 else 's'}"


def rules_from_environ(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, Rule]:
    """Each service's rule from the environment; SettingsError naming every bad variable."""
    errors: list[str] = []
    default = _policy(environ, POLICY_VARIABLE, DEFAULT_POLICY, errors)
    max_restarts = _number(environ, MAX_VARIABLE, DEFAULT_MAX_RESTARTS, int, errors)
    window_s = _number(environ, WINDOW_VARIABLE, DEFAULT_WINDOW_S, float, errors)
    rules = {
        name: Rule(
            _policy(environ, service_variable(name), default, errors),
            int(max_restarts),
            float(window_s),
        )
        for name in names
    }
    if errors:
        raise SettingsError("invalid restart settings:\n  " + "\n  ".join(errors))
    return rules


def _policy(
    environ: Mapping[str, str], variable: str, default: Policy, errors: list[str]
) -> Policy:
    value = environ.get(variable)
    if value is None or not value.strip():
        return default
    try:
        return Policy(value.strip().lower())
    except ValueError:
        choices = ", ".join(p.value for p in Policy)
        errors.append(f"{variable}: expected one of {choices} (got {value!r})")
        return default


def _number(
    environ: Mapping[str, str],
    variable: str,
    default: float,
    kind: type[int] | type[float],
    errors: list[str],
) -> float:
    value = environ.get(variable)
    if value is None or not value.strip():
        return default
    try:
        number = kind(value.strip())
    except ValueError:
        number = -1
    if number < 0 or (kind is float and number == 0):
        unit = "a whole number >= 0" if kind is int else "seconds > 0"
        errors.append(f"{variable}: expected {unit} (got {value!r})")
        return default
    return number
