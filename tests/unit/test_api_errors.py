"""The API's request model and error mapping, without Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.api.errors import status_code_for
from stack.errors import (
    ArgumentsTooDeep,
    BrokerUnavailable,
    DeadLetterNotFound,
    ReplayInProgress,
    StackError,
    UnknownQueue,
    UnknownTask,
)
from stack.settings import Settings


@pytest.fixture
def offline_client():
    """An API whose Redis is never reached: validation answers before any endpoint runs."""
    settings = Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UnknownTask("x"), 404),
        (DeadLetterNotFound("r"), 404),
        (UnknownQueue("q", ("default",)), 422),
        (ArgumentsTooDeep("deep"), 422),
        (ReplayInProgress("busy"), 409),
        (BrokerUnavailable("down"), 503),
        (StackError("anything else"), 500),
    ],
)
def test_each_stack_error_maps_to_one_http_status(error, code):
    assert status_code_for(error) == code


def test_a_subclass_of_a_mapped_error_takes_its_parents_status():
    class SlowBroker(BrokerUnavailable):
        pass

    assert status_code_for(SlowBroker("slow")) == 503
