"""`python start_production.py`: refuses to start insecurely, and starts a locked-down stack."""

from __future__ import annotations

import json
import os
import signal
import stat
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
    key = {"X-API-Key": SECRET}
    assert httpx.post(f"{api}/tasks", json=body).status_code == 401
    accepted = httpx.post(f"{api}/tasks", json=body, headers=key)
    assert accepted.status_code == 202
    status_url = api + accepted.json()["status_url"]
    assert httpx.get(status_url).status_code == 401  # task data is private in production
    deadline = time.monotonic() + 30
    while (status := httpx.get(status_url, headers=key).json())["status"] != "success":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["result"] == "prod"

    assert production.stop() == 0
    log_lines = Path(production.log.name).read_text().splitlines()
    records = [json.loads(line) for line in log_lines if line.strip()]  # every line is JSON
    services = {record["service"] for record in records}
    assert {"redis", "api", "worker", "beat", "flower"} <= services
    assert any(record.get("task_id") == accepted.json()["task_id"] for record in records)


# One distinct value per secret, so that a child's environment shows which one it got.
SECRETS = {
    "STACK_REDIS_PASSWORD": "redis-password-0123456789abcdef",
    "STACK_API_KEY": "api-key-0123456789abcdefghijkl",
    "STACK_FLOWER_BASIC_AUTH": "ops:flower-password-0123456789ab",
    "STACK_FLOWER_COOKIE_SECRET": "cookie-secret-0123456789abcdefg",
}
REDIS_PW, API_KEY, FLOWER_PW, COOKIE = (
    SECRETS["STACK_REDIS_PASSWORD"],
    SECRETS["STACK_API_KEY"],
    SECRETS["STACK_FLOWER_BASIC_AUTH"].partition(":")[2],
    SECRETS["STACK_FLOWER_COOKIE_SECRET"],
)
# Which secret each service may see in its environment (and its every descendant's).
EXPECTED_SECRETS = {
    "redis": set(),
    "api": {API_KEY, REDIS_PW},
    "worker": {REDIS_PW},
    "beat": {REDIS_PW},
    "flower": {FLOWER_PW, COOKIE, REDIS_PW},
}


def process_tree(pid: int) -> list[psutil.Process]:
    main = psutil.Process(pid)
    return [main, *main.children(recursive=True)]


def environ_of(process: psutil.Process) -> str:
    return Path(f"/proc/{process.pid}/environ").read_bytes().decode(errors="replace")


def cmdline_of(process: psutil.Process) -> str:
    return Path(f"/proc/{process.pid}/cmdline").read_bytes().decode(errors="replace")


def assert_private(path: Path, mode: int) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == mode, f"{path}: {oct(path.stat().st_mode)}"


def assert_the_data_dir_is_private(data: Path, config: str) -> None:
    """0700 data dir; the Redis config and the AOF (Redis 6: one file; 7: a dir of parts)
    its owner's only."""
    assert_private(data, 0o700)
    assert_private(data / config, 0o600)
    aof_dir = data / "appendonlydir"
    if aof_dir.exists():
        assert_private(aof_dir, 0o700)
        parts = list(aof_dir.iterdir())
    else:
        parts = [data / "appendonly.aof"]
    assert parts and all(p.is_file() for p in parts), "redis-server wrote no AOF"
    for part in parts:
        assert_private(part, 0o600)


def test_production_gives_each_child_only_its_secrets_and_keeps_task_data_private(tmp_path):
    stack = Stack(clean_env(tmp_path, **SECRETS, STACK_API_WORKERS="2"), tmp_path)
    try:
        table = stack.wait_ready()
        pids = {row["name"]: row["pid"] for row in table["services"]}  # type: ignore[attr-defined]
        assert set(pids) == set(EXPECTED_SECRETS)

        seen: dict[str, set[str]] = {}
        for name, pid in pids.items():
            tree = process_tree(pid)
            assert name != "api" or len(tree) >= 3  # uvicorn's supervisor and its 2 workers
            for process in tree:
                environ = environ_of(process)
                seen.setdefault(name, set()).update(
                    s for s in (REDIS_PW, API_KEY, FLOWER_PW, COOKIE) if s in environ
                )
                for secret in (REDIS_PW, API_KEY, FLOWER_PW, COOKIE):
                    assert secret not in cmdline_of(process), (name, process.cmdline())
        assert seen == EXPECTED_SECRETS

        # No process on the machine shows a secret in its command line (what `ps` shows).
        for process in psutil.process_iter():
            try:
                line = cmdline_of(process)
            except OSError:
                continue  # gone meanwhile
            assert not any(s in line for s in (REDIS_PW, API_KEY, FLOWER_PW, COOKIE)), line

        flower = f"http://127.0.0.1:{stack.env['FLOWER_PORT']}"
        assert httpx.get(f"{flower}/metrics").status_code == 401
        assert httpx.get(f"{flower}/healthcheck").status_code == 200  # probes stay open
        metrics = httpx.get(f"{flower}/metrics", auth=("ops", FLOWER_PW))
        assert metrics.status_code == 200 and "flower_" in metrics.text

        api = f"http://127.0.0.1:{stack.env['API_PORT']}"
        assert httpx.get(f"{api}/metrics").status_code == 401
        bearer = {"Authorization": f"Bearer {API_KEY}"}  # how Prometheus scrapes it
        assert httpx.get(f"{api}/metrics", headers=bearer).status_code == 200

        assert_the_data_dir_is_private(Path(stack.env["STACK_DATA_DIR"]), "redis.conf")
    finally:
        assert stack.stop() == 0


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
