"""The HTTP API against a real Redis and real workers: submit, status, probes, Redis down."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.settings import Settings

pytestmark = pytest.mark.integration

STATUS_TIMEOUT_S = 30.0
POLL_S = 0.05
# "Never a hang": a request against a dead Redis must come back with 503 well
# inside a client's patience. The designed bound is publish timeout (3 s) plus
# one socket timeout (2 s); this is a correctness bound, not a speed target.
REDIS_DOWN_BOUND_S = 10.0


@pytest.fixture
def stack_settings_overrides() -> dict[str, str]:
    # Retries slow enough to see "retrying" between attempts (polled every POLL_S).
    return {"STACK_RETRY_DELAYS": "0.5,0.5,0.5"}


@pytest.fixture
def client(stack_app, stack_settings):
    with TestClient(create_app(stack_settings, stack_app)) as client:
        yield client


def post(client, name, *args, **body):
    response = client.post("/tasks", json={"name": name, "args": list(args), **body})
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(client, status_url, wanted, timeout_s=STATUS_TIMEOUT_S):
    """Poll a status URL until it reports ``wanted``; return the last body."""
    deadline = time.monotonic() + timeout_s
    body = {}
    while time.monotonic() < deadline:
        body = client.get(status_url).json()
        if body["status"] == wanted:
            return body
        time.sleep(POLL_S)
    raise AssertionError(f"status never became {wanted!r}; last: {body}")


def test_a_posted_echo_is_accepted_with_a_status_url_and_comes_back_success(client, stack_worker):
    stack_worker()

    accepted = post(client, "diagnostics.echo", {"hello": "world"}, priority="high")
    body = wait_for(client, accepted["status_url"], "success")

    assert accepted["status_url"] == f"/task-status/{accepted['task_id']}"
    assert body == {
        "task_id": accepted["task_id"],
        "status": "success",
        "result": {"hello": "world"},
        "error": None,
    }


def test_an_unknown_task_is_404_naming_it(client):
    response = client.post("/tasks", json={"name": "reports.nope"})

    assert response.status_code == 404
    assert "unknown task 'reports.nope'" in response.json()["detail"]


def test_an_unknown_queue_is_422_listing_the_known_queues(client):
    response = client.post("/tasks", json={"name": "diagnostics.echo", "queue": "fast_lane"})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "unknown queue 'fast_lane'" in detail
    assert "file_processing" in detail


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "diagnostics.echo", "args": "not-a-list"},
        {"name": "diagnostics.echo", "kwargs": [1]},
        {"name": "diagnostics.echo", "priority": "urgent"},
        {"name": "diagnostics.echo", "surprise": True},
    ],
    ids=["no-name", "args-not-list", "kwargs-not-object", "bad-priority", "extra-field"],
)
def test_a_malformed_body_is_422(client, body):
    assert client.post("/tasks", json=body).status_code == 422


def test_a_body_that_is_not_json_is_422(client):
    response = client.post(
        "/tasks", content=b"name=diagnostics.echo", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_a_result_json_cannot_carry_is_served_faithfully_or_by_name_never_as_a_500(
    client, stack_worker
):
    stack_worker()
    # json.dumps writes NaN and Infinity, which are not JSON; Python's parser (FastAPI's)
    # takes them, and the lone surrogate as the escape \ud800.
    value = ["\ud800", math.nan, math.inf, -math.inf, "café"]
    body = json.dumps({"name": "diagnostics.echo", "args": [value]})
    accepted = client.post("/tasks", content=body, headers={"content-type": "application/json"})
    done = wait_for(client, accepted.json()["status_url"], "success")

    # A lone surrogate comes back as the same \ud800 escape; what JSON lacks, by name.
    assert done["result"] == ["\ud800", "NaN", "Infinity", "-Infinity", "café"]


def test_a_dead_letter_whose_error_holds_a_lone_surrogate_can_be_read(client, stack_worker):
    stack_worker()
    body = {"name": "diagnostics.always_fail", "args": ["\ud800", False]}
    sent = client.post(  # json.dumps escapes the lone surrogate; httpx's own encoder refuses it
        "/tasks", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert sent.status_code == 202, sent.text
    accepted = sent.json()
    deadline = time.monotonic() + STATUS_TIMEOUT_S
    while (response := client.get(accepted["status_url"])).status_code == 200:
        if response.json()["status"] == "dead_lettered" or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    assert response.status_code == 200 and response.json()["status"] == "dead_lettered"


def test_status_is_pending_until_a_worker_starts_then_success(client, stack_worker):
    accepted = post(client, "diagnostics.echo", 42)
    time.sleep(0.5)  # no worker: nothing can move it
    pending = client.get(accepted["status_url"]).json()

    stack_worker()
    done = wait_for(client, accepted["status_url"], "success")

    assert pending == {
        "task_id": accepted["task_id"],
        "status": "pending",
        "result": None,
        "error": None,
    }
    assert done["result"] == 42


def test_status_is_processing_while_the_task_runs(client, stack_worker):
    stack_worker()

    accepted = post(client, "diagnostics.sleep", 1)  # 20 polls long
    running = wait_for(client, accepted["status_url"], "processing")
    done = wait_for(client, accepted["status_url"], "success")

    assert (running["result"], running["error"]) == (None, None)
    assert done["result"] >= 1


def test_status_is_retrying_between_attempts_with_the_error_then_success(client, stack_worker):
    stack_worker()

    accepted = post(client, "diagnostics.fail", kwargs={"failures": 1})
    retrying = wait_for(client, accepted["status_url"], "retrying")
    done = wait_for(client, accepted["status_url"], "success")

    assert "planned failure 1 of 1" in retrying["error"]
    assert done["result"]["attempts"] == 2


def test_a_task_failing_with_a_non_retryable_error_is_dead_lettered_with_its_error(
    client, stack_worker
):
    stack_worker()

    accepted = post(client, "diagnostics.always_fail", kwargs={"retryable": False})
    body = wait_for(client, accepted["status_url"], "dead_lettered")

    assert "always fails" in body["error"]
    assert body["result"] is None


def test_a_revoked_task_is_failure(client, stack_app, stack_worker):
    stack_worker()
    blocker = post(client, "diagnostics.sleep", 2)  # keeps the only slot busy
    wait_for(client, blocker["status_url"], "processing")

    accepted = post(client, "diagnostics.echo", "never")
    stack_app.control.revoke(accepted["task_id"])
    body = wait_for(client, accepted["status_url"], "failure")

    assert "revoked" in body["error"].lower()


def test_ready_is_503_naming_the_missing_workers_then_200_once_one_answers(client, stack_worker):
    without = client.get("/ready")
    worker = stack_worker()
    with_worker = client.get("/ready")

    assert without.status_code == 503
    assert without.json()["redis"] is True
    assert without.json()["missing"][0].startswith("workers: no worker answered ping")
    assert without.json()["detail"].startswith("not ready: workers: no worker answered ping")
    assert with_worker.status_code == 200
    assert with_worker.json() == {
        "ready": True,
        "redis": True,
        "workers": [worker.hostname],
        "missing": [],
    }


def test_with_redis_down_submit_status_and_ready_answer_503_within_seconds_and_recover(
    client, stack_redis
):
    accepted = post(client, "diagnostics.echo", "before")
    stack_redis.stop()

    timings = {}
    responses = {}
    for label, call in {
        "submit": lambda: client.post("/tasks", json={"name": "diagnostics.echo"}),
        "status": lambda: client.get(accepted["status_url"]),
        "ready": lambda: client.get("/ready"),
    }.items():
        started = time.monotonic()
        responses[label] = call()
        timings[label] = time.monotonic() - started
    health = client.get("/health")
    stack_redis.start()
    recovered = client.post("/tasks", json={"name": "diagnostics.echo"})

    assert {label: r.status_code for label, r in responses.items()} == {
        "submit": 503,
        "status": 503,
        "ready": 503,
    }
    assert "the task was not queued" in responses["submit"].json()["detail"]
    assert "REDIS_URL" in responses["submit"].json()["detail"]
    assert "did not answer the status query" in responses["status"].json()["detail"]
    assert responses["ready"].json()["redis"] is False
    assert max(timings.values()) < REDIS_DOWN_BOUND_S, timings
    assert health.status_code == 200
    assert recovered.status_code == 202  # no restart of the API needed


@pytest.fixture
def silent_redis():
    """A TCP server that accepts connections and never answers: a stopped or partitioned Redis."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_redis_that_takes_connections_but_never_answers_is_503_not_a_hang(silent_redis):
    settings = Settings.load(environ={"REDIS_URL": silent_redis})

    with TestClient(create_app(settings)) as client:

        def timed(call):
            started = time.monotonic()
            code = call().status_code
            return code, time.monotonic() - started

        calls = {
            "submit": lambda: client.post("/tasks", json={"name": "diagnostics.echo"}),
            "status": lambda: client.get("/task-status/some-id"),
            "ready": lambda: client.get("/ready"),
        }
        # At once, as clients would arrive: each waits out its own timeout (~4 s, ~3 s, ~1 s).
        with ThreadPoolExecutor(len(calls)) as pool:
            answers = dict(zip(calls, pool.map(timed, calls.values()), strict=True))
        codes = {label: code for label, (code, _) in answers.items()}
        timings = {label: seconds for label, (_, seconds) in answers.items()}

    assert codes == {"submit": 503, "status": 503, "ready": 503}
    assert max(timings.values()) < REDIS_DOWN_BOUND_S, timings


def test_docs_and_the_openapi_schema_list_the_core_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]

    assert client.get("/docs").status_code == 200
    assert {"/tasks", "/task-status/{task_id}", "/health", "/ready"} <= set(paths)
