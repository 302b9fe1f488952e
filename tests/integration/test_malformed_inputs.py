"""Every malformed input is a clear error: named, with its fix, non-zero (or 4xx), no traceback.

One table across the surfaces a user types into: the CLI (``python -m stack`` in a
subprocess with a controlled environment), environment variables, ``.env`` files and
the HTTP API (against the real Redis of the test session). Each case names the
phrase the message must contain, so a vague message fails as surely as a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stack.api.app import create_app
from stack.pytest_plugin import worker_environ

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 30
DEEP = "[" * 5000 + "]" * 5000  # json.loads gives up (RecursionError) far earlier
USAGE, ERROR = 2, 1  # argparse's exit code; a StackError's


@dataclass(frozen=True)
class Cli:
    """``python -m stack ARGV`` with ``env`` on top of the test stack's environment;
    ``dotenv`` is written to ./.env of the working directory (STACK_ENV_FILE unset)."""

    argv: tuple[str, ...]
    expect: str
    code: int
    env: dict[str, str] = field(default_factory=dict)
    dotenv: bytes | None = None
    names: str = ""  # e.g. the variable, at the start of its line


def env_var(variable: str, value: str, expect: str) -> Cli:
    return Cli(("status",), expect, ERROR, env={variable: value}, names=f"  {variable}: ")


def dotenv(content: bytes, expect: str) -> Cli:
    return Cli(("status",), f"env file '.env' {expect}", ERROR, dotenv=content)


CLI_CASES: dict[str, Cli] = {
    # the CLI's own arguments: usage errors, before anything connects
    "submit-args-object": Cli(
        ("submit", "diagnostics.echo", "--args", '{"a": 1}'),
        "argument --args: expected a JSON list",
        USAGE,
    ),
    "submit-kwargs-list": Cli(
        ("submit", "diagnostics.echo", "--kwargs", "[1]"),
        "argument --kwargs: expected a JSON object",
        USAGE,
    ),
    "submit-args-not-json": Cli(
        ("submit", "diagnostics.echo", "--args", "[1,"), "argument --args: expected a list", USAGE
    ),
    "submit-args-nested-5000": Cli(
        ("submit", "diagnostics.echo", "--args", DEEP), "nested too deeply", USAGE
    ),
    "submit-wait-zero": Cli(
        ("submit", "diagnostics.echo", "--wait", "0"),
        "argument --wait: expected a number above 0",
        USAGE,
    ),
    "submit-wait-nan": Cli(
        ("submit", "diagnostics.echo", "--wait", "nan"), "argument --wait: expected a number", USAGE
    ),
    "submit-bad-priority": Cli(
        ("submit", "diagnostics.echo", "--priority", "urgent"), "invalid choice: 'urgent'", USAGE
    ),
    "dlq-limit-negative": Cli(
        ("dlq", "list", "--limit", "-5"),
        "argument --limit: expected a whole number from 1 to 1000",
        USAGE,
    ),
    "dlq-limit-too-big": Cli(("dlq", "list", "--limit", "1001"), "from 1 to 1000", USAGE),
    "dlq-offset-past-int64": Cli(
        ("dlq", "list", "--offset", "9223372036854775808"),
        "argument --offset: expected a whole number from 0 to 1000000",
        USAGE,
    ),
    "dlq-offset-not-a-number": Cli(("dlq", "list", "--offset", "abc"), "got 'abc'", USAGE),
    "dlq-replay-nothing": Cli(("dlq", "replay"), "one record id, or --all", USAGE),
    "load-run-time-zero": Cli(("load", "--run-time", "0"), "run time above 0", USAGE),
    "load-run-time-malformed": Cli(
        ("load", "--run-time", "1.5x"), "expected a run time like 20s, 1m30s or 2h", USAGE
    ),
    "load-no-users": Cli(("load", "--users", "0"), "argument -u/--users", USAGE),
    "load-negative-spawn-rate": Cli(("load", "--spawn-rate", "-1"), "above 0", USAGE),
    "load-fail-ratio-above-1": Cli(("load", "--max-fail-ratio", "2"), "at most 1", USAGE),
    "status-negative-timeout": Cli(("status", "--timeout", "-1"), "above 0", USAGE),
    # well-formed arguments the stack refuses: exit 1 with the fix
    "submit-unknown-task": Cli(("submit", "reports.nope"), "unknown task 'reports.nope'", ERROR),
    "submit-unknown-queue": Cli(
        ("submit", "diagnostics.echo", "--queue", "fast_lane"), "unknown queue 'fast_lane'", ERROR
    ),
    "submit-wait-times-out": Cli(
        ("submit", "diagnostics.sleep", "--args", "[10]", "--wait", "0.5"),
        "is still pending after 0.5 s",
        ERROR,
    ),
    "dlq-show-unknown-id": Cli(("dlq", "show", "no-such-id"), "no dead letter with id", ERROR),
    "load-unknown-profile": Cli(("load", "--profile", "nope"), "load profile 'nope'", ERROR),
    "env-file-missing": Cli(("--env-file", "/nonexistent.env", "status"), "does not exist", ERROR),
    # environment variables: refused when Settings load, naming the variable
    "redis-url-not-a-url": env_var("REDIS_URL", "notaurl", "not a Redis URL"),
    "redis-url-http": env_var("REDIS_URL", "http://127.0.0.1:6379/0", "not a Redis URL"),
    "redis-url-port-99999": env_var("REDIS_URL", "redis://127.0.0.1:99999/0", "port '99999'"),
    "redis-url-db-abc": env_var("REDIS_URL", "redis://127.0.0.1:6379/abc", "database 'abc'"),
    "broker-url-amqp": env_var("CELERY_BROKER_URL", "amqp://guest@localhost//", "not a Redis URL"),
    "backend-url-port-0": env_var("CELERY_RESULT_BACKEND", "redis://h:0/0", "port 0"),
    "rate-limit-garbage": env_var(
        "STACK_RATE_LIMITS", "diagnostics.limited=garbage", "rate of diagnostics.limited"
    ),
    "rate-limit-no-rate": env_var("STACK_RATE_LIMITS", "diagnostics.limited", "task=rate pairs"),
    "serializer-bogus": env_var("STACK_TASK_SERIALIZER", "bogus", "unknown serializer"),
    "api-port-word": env_var("API_PORT", "eighty", "Input should be a valid integer"),
    "timeout-negative": env_var("TASK_TIMEOUT", "-1", "greater than 0"),
    "retry-delays-word": env_var("STACK_RETRY_DELAYS", "1,x", "comma-separated seconds"),
    "profile-unknown": env_var("STACK_PROFILE", "staging", "Input should be 'dev' or 'production'"),
    "dead-letters-past-ceiling": env_var(
        "STACK_DEAD_LETTER_MAX_ENTRIES", "2000000", "less than or equal to 1000000"
    ),
    "env-file-variable-missing": Cli(
        ("status",), "does not exist", ERROR, env={"STACK_ENV_FILE": "/nonexistent.env"}
    ),
    # .env files: a line that does not parse stops, naming the file and the line
    "dotenv-no-equals": dotenv(b"API_PORT=9000\nthis is not valid\n", "line 2: cannot parse"),
    "dotenv-unterminated-quote": dotenv(b'STACK_API_KEY="secret\n', "line 1: cannot parse"),
    "dotenv-bare-key": dotenv(b"API_PORT=9000\nAPI_HOST\n", "line 2: 'API_HOST' has no value"),
    "dotenv-binary": dotenv(b"\x7fELF\x02\x01\x01\x00\xff\xfe", "line 1: not UTF-8 text"),
    "dotenv-bad-value": Cli(
        ("status",), "API_PORT: Input should be a valid integer", ERROR, dotenv=b"API_PORT=eighty\n"
    ),
}


@pytest.fixture
def cli_env(stack_app, stack_settings, stack_worker_env_file) -> dict[str, str]:
    """The test stack's environment for a CLI subprocess (its Redis, no stray settings)."""
    return worker_environ(stack_settings, stack_worker_env_file, os.environ, sys.path)


@pytest.mark.parametrize("case", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_a_malformed_cli_or_environment_input_is_a_clear_error(case: Cli, cli_env, tmp_path):
    env = {**cli_env, **case.env}
    if case.dotenv is not None:
        (tmp_path / ".env").write_bytes(case.dotenv)
        env.pop("STACK_ENV_FILE")
    run = subprocess.run(
        [sys.executable, "-m", "stack", *case.argv],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )

    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == case.code, run.stderr
    assert case.expect in run.stderr, run.stderr
    assert case.names in run.stderr, run.stderr
    assert "error:" in run.stderr  # `celery-stack: error: ...` or argparse's usage error


@dataclass(frozen=True)
class Api:
    method: str
    path: str
    status: int
    expect: str
    json: Any = None
    content: bytes | None = None


def post(body: Any, status: int, expect: str) -> Api:
    return Api("POST", "/tasks", status, expect, json=body)


def raw(content: bytes, expect: str) -> Api:
    return Api("POST", "/tasks", 422, expect, content=content)


API_CASES: dict[str, Api] = {
    "no-name": post({}, 422, "body.name: Field required"),
    "empty-name": post({"name": ""}, 422, "body.name"),
    "args-not-a-list": post({"name": "diagnostics.echo", "args": "x"}, 422, "body.args"),
    "kwargs-not-an-object": post({"name": "diagnostics.echo", "kwargs": [1]}, 422, "body.kwargs"),
    "bad-priority": post({"name": "diagnostics.echo", "priority": "urgent"}, 422, "body.priority"),
    "extra-field": post({"name": "diagnostics.echo", "surprise": 1}, 422, "body.surprise"),
    "unknown-queue": post({"name": "diagnostics.echo", "queue": "fast_lane"}, 422, "fast_lane"),
    "unknown-task": post({"name": "reports.nope"}, 404, "unknown task 'reports.nope'"),
    "not-json": raw(b"name=diagnostics.echo", "JSON decode error"),
    "nested-5000-deep": raw(DEEP.encode(), "nested too deeply"),
    "not-utf8": raw(b"\xff\xfe\xfd", "not UTF-8 text"),
    "body-too-large": Api(
        "POST", "/tasks", 413, "STACK_MAX_BODY_BYTES", content=b" " * (1_048_576 + 1)
    ),
    "offset-past-int64": Api(
        "GET", "/dead-letters?offset=9223372036854775807", 422, "query.offset"
    ),
    "offset-negative": Api("GET", "/dead-letters?offset=-1", 422, "query.offset"),
    "limit-negative": Api("GET", "/dead-letters?limit=-5", 422, "query.limit"),
    "limit-too-big": Api("GET", "/dead-letters?limit=1001", 422, "less than or equal to 1000"),
    "limit-not-a-number": Api("GET", "/dead-letters?limit=abc", 422, "valid integer"),
    "unknown-dead-letter": Api("GET", "/dead-letters/nope", 404, "no dead letter with id 'nope'"),
    "delete-unknown-dead-letter": Api("DELETE", "/dead-letters/nope", 404, "no dead letter"),
    "replay-unknown-dead-letter": Api("POST", "/dead-letters/nope/replay", 404, "no dead letter"),
    "put-dead-letter": Api("PUT", "/dead-letters/x", 405, "use DELETE, GET, OPTIONS"),
    "get-tasks": Api("GET", "/tasks", 405, "GET is not allowed on /tasks"),
    "unknown-path": Api("GET", "/nope", 404, "no endpoint at /nope"),
}


@pytest.fixture
def client(stack_app, stack_settings):
    with TestClient(create_app(stack_settings, stack_app)) as client:
        yield client


@pytest.mark.parametrize("case", API_CASES.values(), ids=API_CASES.keys())
def test_a_malformed_request_is_a_clear_4xx_in_the_one_error_shape(case: Api, client):
    headers = {"content-type": "application/json"} if case.content is not None else None
    response = client.request(
        case.method, case.path, json=case.json, content=case.content, headers=headers
    )

    assert response.status_code == case.status, response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert isinstance(body["detail"], str) and set(body) <= {"detail", "errors"}
    assert case.expect in body["detail"], body


def test_the_table_holds_at_least_40_malformed_inputs():
    assert len(CLI_CASES) + len(API_CASES) >= 40


def test_a_dotenv_named_with_env_file_is_as_strict(cli_env, tmp_path):
    bad = tmp_path / "stack.env"
    bad.write_bytes(b"API_PORT=9000\nFLOWER_PORT='5555' junk\n")
    run = subprocess.run(
        [sys.executable, "-m", "stack", "--env-file", str(bad), "status"],
        env=cli_env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    assert run.returncode == ERROR and "Traceback" not in run.stderr
    assert f"env file {str(bad)!r} line 2: cannot parse 'FLOWER_PORT=...'" in run.stderr
