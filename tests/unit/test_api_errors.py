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


def assert_error_body(response, status: int) -> dict:
    """The one error shape: a string ``detail``, and ``errors`` only on a 422."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= {"detail", "errors"}
    return body


def test_a_validation_error_is_a_sentence_in_detail_and_the_items_in_errors(offline_client):
    body = assert_error_body(
        offline_client.post("/tasks", json={"name": "diagnostics.echo", "args": "x"}), 422
    )
    assert body["detail"] == "invalid request: body.args: Input should be a valid list"
    assert body["errors"] == [
        {"loc": ["body", "args"], "msg": body["errors"][0]["msg"], "type": "list_type"}
    ]


def test_an_unknown_queue_is_a_422_in_the_same_shape(offline_client):
    body = assert_error_body(
        offline_client.post("/tasks", json={"name": "diagnostics.echo", "queue": "fast_lane"}), 422
    )
    assert "unknown queue 'fast_lane'" in body["detail"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"name": "diagnostics.echo"', "JSON decode error: Expecting ',' delimiter"),
        (b"\xff\xfe\xfd", "not UTF-8 text"),
    ],
    ids=["nested-5000-deep", "truncated", "not-utf8"],
)
def test_a_body_that_does_not_parse_is_a_documented_422(offline_client, content, expected):
    response = offline_client.post(
        "/tasks", content=content, headers={"content-type": "application/json"}
    )
    assert expected in assert_error_body(response, 422)["detail"]


@pytest.mark.parametrize(
    "query",
    [
        "offset=9223372036854775807",
        "offset=-1",
        "offset=1000001",
        "limit=0",
        "limit=1001",
        "limit=x",
    ],
)
def test_a_page_out_of_bounds_is_422_before_redis_is_asked(offline_client, query):
    body = assert_error_body(offline_client.get(f"/dead-letters?{query}"), 422)
    assert body["errors"][0]["loc"][0] == "query"


def test_options_lists_every_method_of_the_path_and_a_missing_method_is_405(offline_client):
    options = offline_client.options("/dead-letters/some-id")
    put = offline_client.put("/dead-letters/some-id")

    assert options.status_code == 204
    assert options.headers["allow"] == "DELETE, GET, OPTIONS"
    assert put.headers["allow"] == "DELETE, GET, OPTIONS"
    assert "PUT is not allowed on /dead-letters/some-id" in assert_error_body(put, 405)["detail"]
    assert offline_client.options("/tasks").headers["allow"] == "OPTIONS, POST"


def test_an_unknown_path_is_404_pointing_at_the_docs(offline_client):
    assert "/docs" in assert_error_body(offline_client.get("/nope"), 404)["detail"]


def test_an_unexpected_error_is_a_500_in_the_same_shape():
    settings = Settings.load(environ={"REDIS_URL": "redis://127.0.0.1:1/0"})
    api = create_app(settings)

    @api.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(api, raise_server_exceptions=False) as client:
        body = assert_error_body(client.get("/boom"), 500)
    assert "a bug" not in body["detail"] and "log" in body["detail"]


def test_the_openapi_spec_lists_every_error_status_of_every_endpoint_in_the_one_shape(
    offline_client,
):
    spec = offline_client.get("/openapi.json").json()
    expected = {
        ("post", "/tasks"): {"401", "404", "413", "422", "500", "503"},
        ("get", "/task-status/{task_id}"): {"413", "500", "503"},
        ("get", "/health"): {"413", "500"},
        ("get", "/ready"): {"413", "500", "503"},
        ("get", "/queues"): {"413", "500", "503"},
        ("get", "/dead-letters"): {"413", "422", "500", "503"},
        ("get", "/dead-letters/{record_id}"): {"404", "413", "500", "503"},
        ("delete", "/dead-letters/{record_id}"): {"401", "404", "413", "500", "503"},
        ("post", "/dead-letters/{record_id}/replay"): {"401", "404", "413", "422", "500", "503"},
        ("get", "/metrics"): {"413", "500"},
    }
    for (method, path), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        errors = {s for s in responses if s[0] in "45"}
        assert statuses <= errors, (method, path, errors)
        for status in errors:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            wanted = "ReadinessBody" if path == "/ready" and status == "503" else "ErrorBody"
            assert ref == f"#/components/schemas/{wanted}", (method, path, status)
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["detail"]
    assert "detail" in schemas["ReadinessBody"]["properties"]
