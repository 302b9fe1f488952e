"""The global rate limit holds across worker processes and hosts, and defers without failing.

Windows are measured on the limiter's grant times: the instant the Lua script
let a task run, on Redis's clock, the one clock every worker shares, and the
point where the limit is enforced. The task body starts right after, in the
same process; ``ran_at`` comes from each worker's own clock (skewed on real
hosts) and trails the grant by however long the OS keeps that process waiting.

"Within 10 % overall": N tasks at the limit occupy N slots of 1 / rate
seconds, from the first grant to one slot past the last; the measured time
(on the same Redis clock) must be within 10 % of N / rate.
"""

from __future__ import annotations

import itertools
import time

import pytest

from stack.ratelimit import Rate, RateLimiter
from stack.submit import submit
from tests.integration.helpers import wait_accounted

pytestmark = pytest.mark.integration

LIMIT_PER_S = 10  # 30 tasks span 3 s: three full windows at the limit
TASKS = 30
SLOW_FACTOR = 3  # deferred tasks run late under load, never early
TOLERANCE = 0.10


@pytest.fixture
def stack_settings_overrides() -> dict[str, str]:
    return {"STACK_RATE_LIMITS": f"diagnostics.limited={LIMIT_PER_S}/s"}


def busiest_window(times: list[float], width_s: float = 1.0) -> int:
    """The most events in any half-open window [t, t + width) (a window starting at an event
    is the busiest of its neighbours)."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + width_s) for t in times)


def test_two_workers_share_one_limit_and_defer_tasks_without_failing_or_losing_them(
    stack_app, stack_worker, stack_dead_letters
):
    workers = [stack_worker(concurrency=2, wait=False) for _ in range(2)]
    for worker in workers:  # booted side by side
        worker.wait_ready()
    ids = [submit(stack_app, "diagnostics.limited", args=[n]) for n in range(TASKS)]

    accounting = wait_accounted(stack_app, stack_dead_letters, ids, timeout_s=60)

    assert len(accounting.succeeded) == TASKS and accounting.dead_lettered == set()
    results = [stack_app.AsyncResult(task_id).get(timeout=5) for task_id in ids]
    assert sorted(r["value"] for r in results) == list(range(TASKS))
    granted = sorted(r["granted_at"] for r in results)
    assert busiest_window(granted) <= LIMIT_PER_S
    elapsed_s = granted[-1] - granted[0] + 1 / LIMIT_PER_S
    expected_s = TASKS / LIMIT_PER_S
    # Never faster than the limit allows; a loaded machine may only make it slower, so the upper
    # bound is generous: it catches deferrals that drag, not a slow CI host.
    assert (1 - TOLERANCE) * expected_s <= elapsed_s <= SLOW_FACTOR * expected_s, (
        elapsed_s,
        expected_s,
    )
    metas = [stack_app.backend.get_task_meta(task_id) for task_id in ids]
    assert all(meta["retries"] == 0 for meta in metas)  # a deferral is not a retry
    workers = {meta["worker"] for meta in metas}
    assert len(workers) == 2  # both workers ran limited tasks: the limit is shared


def test_limiter_gives_newcomers_over_the_limit_distinct_slots_one_interval_apart(
    stack_app, stack_settings
):
    limiter = RateLimiter(stack_app.backend.client, stack_settings)
    rate = Rate.parse("5/s")

    grants = [limiter.acquire("demo", rate) for _ in range(4)]

    assert [g.granted for g in grants] == [True, False, False, False]
    slots = [g.at_s for g in grants]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert gaps == pytest.approx([rate.interval_s] * 3, abs=1e-3)
    assert grants[1].wait_s == pytest.approx(rate.interval_s, abs=0.05)


def test_limiter_holds_a_reserved_slot_until_it_comes(stack_app, stack_settings):
    limiter = RateLimiter(stack_app.backend.client, stack_settings)
    rate = Rate.parse("1/s")
    limiter.acquire("demo", rate)
    deferred = limiter.acquire("demo", rate)

    early = limiter.acquire("demo", rate, reserved_s=deferred.at_s)

    assert not early.granted and early.at_s == pytest.approx(deferred.at_s)
    time.sleep(deferred.wait_s + rate.guard_margin_s)
    assert limiter.acquire("demo", rate, reserved_s=deferred.at_s).granted
