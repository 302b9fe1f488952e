"""Readiness: its answer's shape, and a Redis that does not answer, in about a second."""

from __future__ import annotations

import time

from celery import Celery

from stack.checks.readiness import Readiness, check_readiness
from stack.context import bind
from stack.redis_command import free_port
from stack.settings import Settings


def test_ready_only_when_nothing_is_missing():
    assert Readiness(redis=True, workers=["w@h"]).ready
    answer = Readiness(redis=True, missing=["workers: none"]).as_dict()
    assert answer == {"ready": False, "redis": True, "workers": [], "missing": ["workers: none"]}


def test_a_redis_that_refuses_is_reported_with_the_fix_and_workers_are_not_asked():
    app = Celery("ready", set_as_current=False)
    bind(app, Settings.load(environ={"REDIS_URL": f"redis://:pw@127.0.0.1:{free_port()}/0"}))

    started = time.monotonic()
    readiness = check_readiness(app)

    assert time.monotonic() - started < 5
    assert not readiness.ready and not readiness.redis
    assert "does not answer PING" in readiness.missing[0]
    assert ":***@" in readiness.missing[0] and "pw" not in readiness.missing[0]
    assert readiness.missing[1] == "workers: not checked while Redis is down"
