"""A global (cluster-wide) rate limiter per task type, atomic in Redis.

Celery's ``rate_limit`` is per worker instance (celery #4727): two workers at
5/s make 10/s. Here every worker process on every host asks one Lua script in
Redis, on Redis's clock, so the limit holds for the whole cluster.

The script combines two rules:

* next free slot (GCRA with no burst): a newcomer that is over the limit is
  given its own future slot, one ``interval`` after the previous one, and the
  caller defers the task until then. Deferred tasks come back spread out, in
  order, instead of stampeding at the same instant.
* sliding window guard: nothing is granted while the last ``period`` (plus a
  small margin) already holds ``limit`` grants, so no window of one period
  ever exceeds the limit, even when deferred tasks come back late and bunch up.

The spacing is ``(period + margin) / limit``, so an on-time schedule never
trips the guard. A broker countdown comes back late under load (the worker's
main process must get the CPU to fire it), so a deferral aims ``lead_s``
early and the worker sleeps out what is left; any wait up to ``hold_s`` is
slept in the worker rather than sent through the broker, so late arrivals do
not push each other further back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from stack.errors import SettingsError
from stack.rates import parse_rate
from stack.settings import Settings

US_PER_S = 1_000_000
# A task runs a moment after its grant, and that moment varies: a guard window
# this much longer than the period keeps run times, not just grants, within the limit.
GUARD_MARGIN_S = 0.02
GUARD_MARGIN_OF_INTERVAL = 0.1  # ... and never more than a tenth of the spacing (2 % of rate)
# A wait this short is slept in the worker: a broker countdown is often later than that.
HOLD_MAX_S = 0.1
HOLD_MAX_OF_INTERVAL = 0.5
MAX_HOLDS = 3  # then defer through the broker anyway (heavy contention)

ACQUIRE_LUA = """
-- Grant one run of a rate-limited task type now, or reserve a later slot.
-- KEYS[1]  window: zset of recent grants (member -> grant time, us)
-- KEYS[2]  next:   the next free slot for a newcomer (us, a string)
-- ARGV[1]  limit        grants allowed per guard window
-- ARGV[2]  guard_us     the guard window: the period plus a small margin (us)
-- ARGV[3]  interval_us  the spacing of reserved slots: guard_us / limit
-- ARGV[4]  reserved_us  the slot this task was given by an earlier deferral, or 0
-- ARGV[5]  member       a unique id for this attempt's grant
-- Returns {granted, at_us, now_us} on Redis's clock:
--   granted = 1: run now; at_us = now_us = the grant time.
--   granted = 0: defer until at_us, then call again with ARGV[3] = at_us.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local guard = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local reserved = tonumber(ARGV[4])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - guard)
local count = redis.call('ZCARD', KEYS[1])
local room_at = now
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  room_at = tonumber(oldest[2]) + guard
end
local next_free = tonumber(redis.call('GET', KEYS[2]) or '0')

local function grant()
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.ceil(guard / 1000) + 1000)
  return {1, now, now}
end

if reserved > 0 then
  -- A deferred task back for the slot it holds: not before the slot (it may
  -- come early, or a long wait may have been cut into legs), then the window decides.
  if reserved > now then return {0, reserved, now} end
  if count < limit then return grant() end
  return {0, room_at, now}
end
if count < limit and next_free <= now then
  redis.call('SET', KEYS[2], string.format('%d', now + interval),
             'PX', math.ceil((interval + guard) / 1000))
  return grant()
end
local slot = math.max(next_free, now, room_at)
redis.call('SET', KEYS[2], string.format('%d', slot + interval),
           'PX', math.ceil((slot + interval - now + guard) / 1000))
return {0, slot, now}
"""


@dataclass(frozen=True)
class Rate:
    """``limit`` runs per ``period_s`` seconds, written like Celery's: ``5/s``, ``100/m``."""

    limit: int
    period_s: float

    @classmethod
    def parse(cls, text: str | int) -> Rate:
        """``"5/s"``, ``"100/m"``, ``"10/5s"``, ``"3/h"``; a bare number is per second."""
        return cls(*parse_rate(text))

    @property
    def guard_margin_s(self) -> float:
        return min(GUARD_MARGIN_S, GUARD_MARGIN_OF_INTERVAL * self.period_s / self.limit)

    @property
    def guard_s(self) -> float:
        """The sliding window no more than ``limit`` grants may share."""
        return self.period_s + self.guard_margin_s

    @property
    def interval_s(self) -> float:
        """The spacing between two reserved slots: the guard window shared out evenly."""
        return self.guard_s / self.limit

    @property
    def hold_s(self) -> float:
        """The longest wait a worker sleeps through rather than defer through the broker."""
        return min(HOLD_MAX_S, HOLD_MAX_OF_INTERVAL * self.interval_s)

    @property
    def lead_s(self) -> float:
        """How early a deferred task is sent back for its slot (it sleeps out the rest)."""
        return self.hold_s / 2

    def __str__(self) -> str:
        return f"{self.limit}/{self.period_s:g}s"


@dataclass(frozen=True)
class Grant:
    """The limiter's answer, on Redis's clock: run now, or come back at ``at_s``."""

    granted: bool
    at_s: float
    now_s: float

    @property
    def wait_s(self) -> float:
        return max(0.0, self.at_s - self.now_s)


def rate_limits(settings: Settings) -> dict[str, Rate]:
    """STACK_RATE_LIMITS parsed; a bad entry is a SettingsError naming the variable."""
    parsed = {}
    for name, text in settings.rate_limits.items():
        try:
            parsed[name] = Rate.parse(text)
        except ValueError as exc:
            raise SettingsError(f"STACK_RATE_LIMITS: {name}: {exc}") from None
    return parsed


def rate_for(settings: Settings, task: Any) -> Rate | None:
    """A task's global limit: STACK_RATE_LIMITS first, else its ``global_rate_limit``."""
    text = settings.rate_limits.get(task.name) or getattr(task, "global_rate_limit", None)
    if not text:
        return None
    try:
        return Rate.parse(text)
    except ValueError as exc:
        source = "STACK_RATE_LIMITS" if task.name in settings.rate_limits else "global_rate_limit"
        raise SettingsError(f"{source} of task {task.name}: {exc}") from None


class RateLimiter:
    """The limiter's keys (``<key_prefix>ratelimit:{task}:*``) and its one script."""

    def __init__(self, client: redis.Redis[bytes], settings: Settings) -> None:
        self.redis = client
        self.prefix = f"{settings.key_prefix}ratelimit:"
        self._script = client.register_script(ACQUIRE_LUA)

    def keys(self, name: str) -> list[str]:
        # The hash tag keeps both keys of one task type in one Redis Cluster slot.
        return [f"{self.prefix}{{{name}}}:window", f"{self.prefix}{{{name}}}:next"]

    def acquire(self, name: str, rate: Rate, reserved_s: float | None = None) -> Grant:
        """Ask to run task type ``name`` now; pass a deferral's slot back as ``reserved_s``."""
        reserved_us = round(reserved_s * US_PER_S) if reserved_s else 0
        granted, at_us, now_us = self._script(
            keys=self.keys(name),
            args=[
                rate.limit,
                round(rate.guard_s * US_PER_S),
                round(rate.interval_s * US_PER_S),
                reserved_us,
                uuid.uuid4().hex,
            ],
        )
        return Grant(bool(granted), int(at_us) / US_PER_S, int(now_us) / US_PER_S)

    def acquire_or_hold(
        self,
        name: str,
        rate: Rate,
        reserved_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Grant:
        """``acquire``, sleeping through waits no longer than ``rate.hold_s`` (a few times at
        most); a refused Grant means: defer the task through the broker until ``at_s``."""
        grant = self.acquire(name, rate, reserved_s)
        for _ in range(MAX_HOLDS):
            if grant.granted or grant.wait_s > rate.hold_s:
                break
            sleep(grant.wait_s)
            grant = self.acquire(name, rate, grant.at_s)
        return grant

    def reset(self, name: str) -> None:
        """Forget a task type's history (tests, or after changing its limit)."""
        self.redis.delete(*self.keys(name))
