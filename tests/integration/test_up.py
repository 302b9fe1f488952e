"""`celery-stack up` end to end: a subprocess on free ports, driven like a user would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import AliasChoices

from stack.queues import QUEUES
from stack.redis_command import free_port, port_is_free
from stack.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0  # two loaded cores shared with other test workers
STOP_TIMEOUT_S = 60.0


def clean_environ() -> dict[str, str]:
    """The shell's environment without any stack setting (the test names its own)."""
    names = {
        str(alias.choices[0]).upper()
        for field in Settings.model_fields.values()
        if isinstance(alias := field.validation_alias, AliasChoices)
    }
    return {k: v for k, v in os.environ.items() if k.upper() not in names | {"STACK_ENV_FILE"}}


class Up:
    """`python -m stack up --json` in its own session, stdout parsed, stderr kept."""

    def __init__(self, tmp_path: Path, *args: str, **env: str) -> None:
        self.redis_port, self.api_port, self.flower_port = free_port(), free_port(), free_port()
        self.env = {
            **clean_environ(),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "API_PORT": str(self.api_port),
            "FLOWER_PORT": str(self.flower_port),
            "STACK_DATA_DIR": str(tmp_path / "data"),
            **env,
        }
        self.log_path = tmp_path / "up.log"
        self.lines: list[str] = []
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stack", "up", "--json", "--no-color", *args],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.lines:
                return json.loads(self.lines[0])
            if self.process.poll() is not None:
                pytest.fail(f"up exited with {self.process.returncode}:\n{self.log[-4000:]}")
            time.sleep(0.05)
        pytest.fail(f"up was not ready in {READY_TIMEOUT_S:g} s:\n{self.log[-4000:]}")

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        return self.process.wait(timeout_s)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def cleanup(self) -> None:
        """Whatever a failed test left behind: every child's process group, then ours."""
        leftovers: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            leftovers = self.descendants()
        for pid in [p.pid for p in leftovers] + [self.process.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def up(tmp_path):
    started: list[Up] = []

    def start(*args: str, **env: str) -> Up:
        started.append(Up(tmp_path, *args, **env))
        return started[-1]

    yield start
    for launched in started:
        launched.cleanup()


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def poll_status(client: httpx.Client, status_url: str, until: set[str]) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(status_url).json()
        if body["status"] in until:
            return body
        time.sleep(0.05)
    pytest.fail(f"{status_url} never reached {until}: last {body}")


def flower_sees_alive(port: int, worker: str) -> bool:
    """Flower's dashboard marks a worker online from its heartbeats (kept on in the Procfile)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page = httpx.get(f"http://127.0.0.1:{port}/workers", params={"json": "1"})
        rows = page.json()["data"] if page.status_code == 200 else []
        if any(row.get("hostname") == worker and row.get("status") is True for row in rows):
            return True
        time.sleep(0.2)
    return False


def active_queues(env: dict[str, str], worker: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "stack.celery_app",
            "inspect",
            "active_queues",
            "--destination",
            worker,
            "--timeout",
            "10",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout + result.stderr


def test_up_serves_the_stack_then_sigint_stops_every_process_and_frees_every_port(up):
    stack = up()
    table = stack.wait_ready()
    assert [s["name"] for s in table["services"]] == ["redis", "api", "worker", "beat", "flower"]
    assert {s["state"] for s in table["services"]} == {"ready"}
    processes = stack.descendants()
    assert len(processes) >= 5

    with httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}", timeout=10) as client:
        accepted = client.post("/tasks", json={"name": "diagnostics.echo", "args": ["hi"]})
        assert accepted.status_code == 202, accepted.text
        done = poll_status(client, accepted.json()["status_url"], {"success", "failure"})
        assert (done["status"], done["result"]) == ("success", "hi")

        worker = table["services"][2]["url"]
        assert flower_sees_alive(stack.flower_port, worker), "Flower never saw a heartbeat"
        listing = active_queues(stack.env, worker)
        for queue in QUEUES:
            assert f"'name': '{queue}'" in listing, listing

        # A task still running at Ctrl-C finishes: the worker gets a warm shutdown.
        slow = client.post("/tasks", json={"name": "diagnostics.sleep", "args": [1.5]}).json()
        poll_status(client, slow["status_url"], {"processing"})

    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0, stack.log[-4000:]
    assert f"diagnostics.sleep[{slow['task_id']}] succeeded" in stack.log
    assert [p.pid for p in processes if not gone(p)] == []
    for port in (stack.redis_port, stack.api_port, stack.flower_port):
        assert port_is_free(port), f"port {port} still taken"


def test_up_refuses_a_taken_port_naming_it_and_its_variable(up):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = up(API_PORT=str(port))
        assert stack.wait() == 1
    assert f"port {port} for api is already in use" in stack.log
    assert "set API_PORT to a free port" in stack.log
    assert stack.lines == []


def test_a_service_dying_during_start_up_stops_the_launch_and_shows_its_last_lines(up, tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        (ROOT / "Procfile").read_text().split("\napi:")[0]
        + "\napi: python -c \"print('loading the api'); raise SystemExit('boom: bad config')\"\n"
    )
    stack = up("--procfile", str(procfile))
    assert stack.wait() == 1
    assert "api exited (rc=1) during start-up" in stack.log
    assert "boom: bad config" in stack.log.split("during start-up")[-1]
    assert port_is_free(stack.redis_port), "Redis was left running"


def test_up_uses_a_redis_that_already_answers_and_leaves_it_running(up, stack_redis):
    stack = up("--only", "redis,beat", REDIS_URL=stack_redis.url)
    table = stack.wait_ready()
    assert [(s["name"], s["state"]) for s in table["services"]] == [
        ("redis", "external"),
        ("beat", "ready"),
    ]
    stack.process.send_signal(signal.SIGTERM)
    assert stack.wait() == 0, stack.log[-4000:]
    assert not port_is_free(int(stack_redis.url.rsplit(":", 1)[1].split("/")[0]))


def test_honcho_start_runs_the_same_procfile_without_the_launcher(tmp_path):
    """The Procfile stands alone: every line has its defaults, so any runner can start it."""
    from stack.checks.probes import FileWritten, HttpOk, RedisPing, WorkerPing

    ports = {name: free_port() for name in ("REDIS", "API", "FLOWER")}
    env = {
        **clean_environ(),
        "REDIS_URL": f"redis://127.0.0.1:{ports['REDIS']}/0",
        "API_PORT": str(ports["API"]),
        "FLOWER_PORT": str(ports["FLOWER"]),
        "STACK_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    settings = Settings.load(environ=env)
    probes = [
        RedisPing(settings),
        HttpOk(f"http://127.0.0.1:{ports['API']}/health"),
        WorkerPing(settings, f"worker@{socket.gethostname()}"),
        FileWritten(tmp_path / "data", "celerybeat-schedule*"),
        HttpOk(f"http://127.0.0.1:{ports['FLOWER']}/healthcheck"),
    ]
    with (tmp_path / "honcho.log").open("wb") as log:
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "--no-colour"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = list(probes)
        while waiting and time.monotonic() < deadline and honcho.poll() is None:
            waiting = [probe for probe in waiting if not probe.check()]
            time.sleep(0.1)
        log_text = (tmp_path / "honcho.log").read_text(errors="replace")
        assert not waiting, f"never ready: {[p.description for p in waiting]}\n{log_text[-3000:]}"
    finally:
        honcho.send_signal(signal.SIGINT)
        honcho.wait(STOP_TIMEOUT_S)
        probes[2].close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(honcho.pid, signal.SIGKILL)
