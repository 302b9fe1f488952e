"""The beat lock's key: one per stack (key prefix), shared by every beat and the healthcheck."""

from __future__ import annotations

from stack.beat import lock_key
from stack.checks.probes import BeatLockHeld
from stack.settings import Settings


def test_the_lock_is_named_after_the_stacks_key_prefix():
    settings = Settings.load(environ={"STACK_KEY_PREFIX": "shop:"})
    assert lock_key(settings) == "shop:beat:lock"
    assert BeatLockHeld(settings).description == "beat lock shop:beat:lock held"
