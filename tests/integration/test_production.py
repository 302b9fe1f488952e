"""`python start_production.py`: refuses to start insecurely, and starts a locked-down stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stack.redis_command import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "start_production.py"
SECRET = "s3cr3t-but-long-enough-0123456789"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
NO_RETRY = Retry(NoBackoff(), 0)  # the first refusal is the answer


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Only what the stack needs: no settings leak in from the developer's shell."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "STACK_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "API_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "STACK_READY_TIMEOUT": "90",
        **extra,
    }


def test_nothing_configured_exits_non_zero_listing_every_missing_item(tmp_path):
    result = subprocess.run(
        [sys.executable, str(START)],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    for variable in (
        "STACK_REDIS_PASSWORD",
        "STACK_FLOWER_BASIC_AUTH",
        "STACK_FLOWER_COOKIE_SECRET",
        "STACK_API_KEY",
    ):
        assert variable in result.stderr
    assert result.stderr.count("refusing to start") == 1  # one message, every item
    assert not (tmp_path / "data").exists()  # nothing was started


class Stack:
    """start_production.py in the background; its first stdout line is the ready table."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.log = (cwd / "stack.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(START), "--json"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        self.table: dict[str, object] | None = None
        self._reader = threading.Thread(target=self._read_table, daemon=True)
        self._reader.start()

    def _read_table(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip():
            self.table = json.loads(line)

    def wait_ready(self) -> dict[str, object]:
        self._reader.join(READY_TIMEOUT_S)
        if self.table is None:
            log = Path(self.log.name).read_text()[-4000:]
            raise AssertionError(f"no ready table (exit {self.process.poll()}); log:\n{log}")
        return self.table

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        return self.process.returncode


def command_lines_mentioning(text: str) -> list[str]:
    """Every process command line (what `ps` shows any local user) containing ``text``."""
    lines = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
    return [line for line in lines if text in line]


@pytest.fixture
def production(tmp_path) -> Iterator[Stack]:
    env = clean_env(
        tmp_path,
        STACK_REDIS_PASSWORD=SECRET,
        STACK_FLOWER_BASIC_AUTH=f"ops:{SECRET}",
        STACK_FLOWER_COOKIE_SECRET=SECRET,
        STACK_API_KEY=SECRET,
        STACK_API_WORKERS="2",
    )
    stack = Stack(env, tmp_path)
    try:
        yield stack
    finally:
        stack.stop()


def test_configured_production_stack_is_ready_and_locked_down(production):
    table = production.wait_ready()
    assert table["ready"] is True
    env = production.env
    api = f"http://127.0.0.1:{env['API_PORT']}"
    flower = f"http://127.0.0.1:{env['FLOWER_PORT']}"

    # No retries: redis-py retries an AuthenticationError (a ConnectionError) with backoff, ~4 s.
    anonymous = redis.Redis.from_url(env["REDIS_URL"], socket_timeout=5, retry=NO_RETRY)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    redis_port = env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]
    command_lines = command_lines_mentioning(redis_port)
    assert command_lines  # redis-server (and the shell that started it) ...
    assert not any(SECRET in line for line in command_lines)  # ... never show the password

    assert httpx.get(f"{flower}/").status_code == 401
    assert httpx.get(f"{flower}/api/workers").status_code == 401
    assert httpx.get(f"{flower}/", auth=("ops", SECRET)).status_code == 200

    body = {"name": "diagnostics.echo", "args": ["prod"]}
    assert httpx.post(f"{api}/tasks", json=body).status_code == 401
    accepted = httpx.post(f"{api}/tasks", json=body, headers={"X-API-Key": SECRET})
    assert accepted.status_code == 202
    status_url = api + accepted.json()["status_url"]
    deadline = time.monotonic() + 30
    while (status := httpx.get(status_url).json())["status"] != "success":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["result"] == "prod"

    assert production.stop() == 0
    log_lines = Path(production.log.name).read_text().splitlines()
    records = [json.loads(line) for line in log_lines if line.strip()]  # every line is JSON
    services = {record["service"] for record in records}
    assert {"redis", "api", "worker", "beat", "flower"} <= services
    assert any(record.get("task_id") == accepted.json()["task_id"] for record in records)


def test_an_external_redis_without_a_password_is_refused(stack_redis, tmp_path):
    env = clean_env(
        tmp_path,
        REDIS_URL=stack_redis.url,  # answers without a password
        STACK_REDIS_PASSWORD=SECRET,
        STACK_FLOWER_BASIC_AUTH=f"ops:{SECRET}",
        STACK_FLOWER_COOKIE_SECRET=SECRET,
        STACK_API_KEY=SECRET,
    )
    result = subprocess.run(
        [sys.executable, str(START)], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "answers commands without a password" in result.stderr
