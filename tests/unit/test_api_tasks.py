"""The API's request model and error mapping, without Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from stack.api.app import create_app
from stack.api.tasks import TaskRequest
from stack.arguments import MAX_ARGUMENT_DEPTH
from stack.settings import Settings


def test_a_request_needs_only_a_name_and_defaults_to_normal_priority_and_its_route():
    request = TaskRequest(name="diagnostics.echo")

    assert (request.args, request.kwargs, request.priority, request.queue) == (
        [],
        {},
        "normal",
        None,
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x", "priority": "urgent"},
        {"name": "x", "args": {"a": 1}},
        {"name": "x", "kwargs": [1]},
        {"name": "x", "unexpected": 1},
    ],
)
def test_malformed_requests_are_rejected(body):
    with pytest.raises(ValidationError):
        TaskRequest.model_validate(body)


@pytest.fixture
def offline_client():
    """An API whose Redis is never reached: validation answers before any endpoint runs."""
    settings = Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_malformed_body_is_422_before_redis_is_touched(offline_client):
    response = offline_client.post("/tasks", json={"name": "diagnostics.echo", "priority": 1})

    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith("invalid request: body.priority: Input should be")
    assert body["errors"][0]["loc"] == ["body", "priority"]


def test_an_unknown_task_is_404_before_redis_is_touched(offline_client):
    response = offline_client.post("/tasks", json={"name": "nope.nothing"})

    assert response.status_code == 404
    assert "unknown task 'nope.nothing'" in response.json()["detail"]


def test_health_answers_without_redis(offline_client):
    assert offline_client.get("/health").json() == {"status": "ok"}


def test_arguments_nested_too_deep_are_422_naming_the_limit_before_redis_is_touched(
    offline_client,
):
    deep: object = 1
    for _ in range(MAX_ARGUMENT_DEPTH + 1):
        deep = [deep]
    response = offline_client.post(
        "/tasks", json={"name": "diagnostics.echo", "kwargs": {"v": deep}}
    )

    assert response.status_code == 422
    assert f"kwargs['v'] nests deeper than {MAX_ARGUMENT_DEPTH} levels" in response.json()["detail"]
