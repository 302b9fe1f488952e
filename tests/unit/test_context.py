"""StackContext: bound once, read typed, one Redis client per process."""

from __future__ import annotations

import os

import pytest
from celery import Celery

from stack.context import bind, context_of, find_context
from stack.errors import SettingsError
from stack.settings import Settings


def test_a_bound_app_gives_back_its_context_and_its_settings():
    app = Celery("bound", set_as_current=False)
    settings = Settings.load(environ={"STACK_KEY_PREFIX": "ctx:"})
    context = bind(app, settings)

    assert context_of(app) is context
    assert context.settings is settings
    assert context.dead_letters.records_key == "ctx:deadletter:records"
    assert context.metrics.prefix == "ctx:metrics:"


def test_an_unbound_app_has_no_context_and_says_how_to_bind_it():
    app = Celery("unbound", set_as_current=False)
    assert find_context(app) is None
    with pytest.raises(SettingsError, match="load_app"):
        context_of(app)


def test_the_redis_client_is_made_once_per_process_and_again_after_a_fork(monkeypatch):
    context = bind(Celery("forks", set_as_current=False), Settings.load(environ={}))
    first = context.redis
    assert context.redis is first and context.dead_letters is context.dead_letters

    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a prefork child sees it
    assert context.redis is not first


def test_close_drops_the_client_so_the_next_use_makes_a_new_one():
    context = bind(Celery("closes", set_as_current=False), Settings.load(environ={}))
    first = context.redis
    context.close()
    assert context.redis is not first
