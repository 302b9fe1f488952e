"""Fixtures of the integration tests beyond the plugin's.

The stack fixtures themselves (stack_redis, stack_app, stack_worker, ...) come from
the celery-stack plugin, as they would in any project.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from stack.settings import Settings
from tests.integration.helpers import Batch


@pytest.fixture
def batch(stack_app: Celery, stack_settings: Settings, stack_dead_letters: Any) -> Batch:
    """An empty batch on the app under test, counting its dead letters too."""
    return Batch(stack_app, stack_settings, stack_dead_letters)
