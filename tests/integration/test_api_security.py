import pytest
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.connection import redis_client

pytestmark = pytest.mark.integration

KEY = "k3y-that-is-long-enough-for-production"


@pytest.fixture
def stack_settings_overrides():
    return {"STACK_API_KEY": KEY, "STACK_MAX_BODY_BYTES": "2048"}


@pytest.fixture
def client(stack_app, stack_settings):
    with TestClient(create_app(stack_settings, stack_app)) as client:
        yield client


def test_posting_a_task_without_the_key_is_401_and_queues_nothing(client, stack_settings):
    response = client.post("/tasks", json={"name": "diagnostics.echo", "args": [1]})
    assert response.status_code == 401
    assert redis_client(stack_settings).dbsize() == 0


def test_posting_a_task_with_the_key_is_202(client):
    response = client.post(
        "/tasks", json={"name": "diagnostics.echo", "args": [1]}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 202
    assert response.json()["task_id"]


def test_a_task_body_above_the_ceiling_is_413(client):
    response = client.post(
        "/tasks",
        json={"name": "diagnostics.echo", "args": ["x" * 4096]},
        headers={"X-API-Key": KEY},
    )
    assert response.status_code == 413


def test_status_reads_need_no_key(client):
    assert client.get("/task-status/nope").status_code == 200


@pytest.fixture
def production(stack_app, stack_settings):
    """The API of the production profile, on the app under test."""
    settings = stack_settings.model_copy(update={"profile": "production"})
    with TestClient(create_app(settings, stack_app)) as client:
        yield client


@pytest.mark.parametrize("path", ["/task-status/t-1", "/dead-letters", "/queues", "/metrics"])
def test_production_reads_of_task_data_need_the_key(production, path):
    refused = production.get(path)
    assert refused.status_code == 401
    assert "STACK_API_KEY" in refused.json()["detail"]
    assert production.get(path, headers={"X-API-Key": KEY}).status_code == 200
    assert production.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert production.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_production_probes_and_docs_stay_open(production):
    assert production.get("/health").status_code == 200
    assert production.get("/ready").status_code in (200, 503)  # no worker here: 503, not 401
    assert production.get("/openapi.json").status_code == 200


def test_an_operator_may_open_production_reads_behind_their_own_access_control(
    stack_app, stack_settings
):
    settings = stack_settings.model_copy(update={"profile": "production", "api_open_reads": True})
    with TestClient(create_app(settings, stack_app)) as client:
        assert client.get("/task-status/t-1").status_code == 200
        assert client.post("/tasks", json={"name": "diagnostics.echo"}).status_code == 401
