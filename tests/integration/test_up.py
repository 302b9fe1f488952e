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

from stack.launcher.process_tree import SHELLS
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

    def __init__(self, tmp_path: Path, *args: str, cwd: Path = ROOT, **env: str) -> None:
        self.redis_port, self.api_port, self.flower_port = free_port(), free_port(), free_port()
        self.env = {
            **clean_environ(),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "API_PORT": str(self.api_port),
            "FLOWER_PORT": str(self.flower_port),
            "STACK_DATA_DIR": str(tmp_path / "data"),
            **env,
        }
        self.log_path = next(  # a second `up` in one test keeps the first one's log
            path
            for n in range(1, 100)
            if not (path := tmp_path / ("up.log" if n == 1 else f"up-{n}.log")).exists()
        )
        self.lines: list[str] = []
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stack", "up", "--json", "--no-color", *args],
                cwd=cwd,
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

    def start(*args: str, cwd: Path = ROOT, **env: str) -> Up:
        started.append(Up(tmp_path, *args, cwd=cwd, **env))
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


# --- supervision: restarts after ready, no orphans ---------------------------------------

BATCH = 1_000
CONSUMES_AGAIN_S = 5.0  # the done-when figure: a worker consumes again within 5 s of the kill
# ... on a quiet machine. A restart cannot beat the worker's own boot, which two cores shared
# with other test runs stretch to 5 s and more: then allow that boot plus this much of ours.
RESTART_OVERHEAD_S = 1.5
GONE_S = 5.0  # ... and no process of a SIGKILLed launcher is left after 5 s


def is_celery_worker(process: psutil.Process | None) -> bool:
    try:
        line = process.cmdline() if process is not None else []
        return process is not None and process.name() not in SHELLS and "worker" in line
    except psutil.NoSuchProcess:
        return False


def worker_main(stack: Up) -> psutil.Process:
    """The Celery worker's main process (the parent of the pool), not the Procfile's shell."""
    for process in stack.descendants():
        with contextlib.suppress(psutil.NoSuchProcess):
            if is_celery_worker(process) and not is_celery_worker(process.parent()):
                return process
    pytest.fail(f"no worker main process among {stack.descendants()}")


def redis_server(stack: Up) -> psutil.Process:
    for process in stack.descendants():
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.name() == "redis-server":
                return process
    pytest.fail("no redis-server among the launcher's descendants")


def wait_for_line(stack: Up, text: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in stack.log:
        if time.monotonic() > deadline:
            pytest.fail(f"never logged {text!r}:\n{stack.log[-4000:]}")
        if stack.process.poll() is not None:
            pytest.fail(f"up exited with {stack.process.returncode}:\n{stack.log[-4000:]}")
        time.sleep(0.05)


def alive(process: psutil.Process) -> bool:
    return not gone(process)


@pytest.mark.timeout(300)  # 1,000 tasks, a kill and a reboot: minutes on two loaded cores
def test_a_worker_sigkilled_mid_batch_is_restarted_and_all_1000_tasks_succeed_promptly(up):
    from stack.app_factory import load_app
    from stack.submit import submit
    from tests.integration.helpers import Batch

    stack = up("--only", "redis,worker")
    table = stack.wait_ready()
    boot_s = table["services"][1]["ready_after_s"]
    settings = Settings.load(environ=stack.env)
    app = load_app(settings)
    batch = Batch(app, settings)
    for i in range(BATCH):
        batch.add(submit(app, "diagnostics.echo", [i]))
    batch.wait_until(lambda a: len(a.succeeded) >= 50, timeout_s=60)
    main = worker_main(stack)
    main.kill()
    killed_at = time.monotonic()
    main.wait(10)
    time.sleep(0.3)  # the pool children die with their parent (PDEATHSIG): nothing finishes now
    done_at_kill = len(batch.account().succeeded)
    assert done_at_kill < BATCH, "the batch was over before the kill: make it longer"
    batch.wait_until(lambda a: len(a.succeeded) > done_at_kill, timeout_s=30)
    consumes_again_s = time.monotonic() - killed_at
    accounting = batch.settle(timeout_s=120)  # far below the visibility timeout (3600 s)
    settled_s = time.monotonic() - killed_at
    print(
        f"\nworker consumed again {consumes_again_s:.2f} s after SIGKILL (its first boot took "
        f"{boot_s:.2f} s); {len(accounting.succeeded)}/{BATCH} succeeded, settled "
        f"{settled_s:.2f} s after it"
    )
    assert len(accounting.succeeded) == BATCH, accounting.summary()
    assert consumes_again_s < max(CONSUMES_AGAIN_S, boot_s + RESTART_OVERHEAD_S)
    assert "worker exited (rc=137, SIGKILL) while running: restart 1 of 5" in stack.log
    assert "worker: requeued" in stack.log, stack.log[-4000:]
    assert "redis exited" not in stack.log


def test_the_launchers_redis_killed_is_restarted_on_its_aof_and_the_worker_keeps_running(up):
    from stack.connection import redis_client

    stack = up("--only", "redis,worker")
    stack.wait_ready()
    settings = Settings.load(environ=stack.env)
    client = redis_client(settings)
    client.set("survives-a-restart", b"yes")
    time.sleep(1.2)  # appendfsync everysec: on disk within a second
    worker = worker_main(stack)
    redis_server(stack).kill()
    wait_for_line(stack, "redis ready again", timeout_s=30)
    assert client.get("survives-a-restart") == b"yes"
    # The Redis line execs redis-server (no shell between): the launcher sees the signal itself.
    assert "redis exited (rc=-9, SIGKILL) while running: restart 1 of 5" in stack.log
    assert worker.is_running() and "worker exited" not in stack.log
    client.close()
    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0, stack.log[-4000:]


def test_a_sigkilled_launcher_leaves_no_process_behind_and_up_starts_again_at_once(up):
    stack = up()
    stack.wait_ready()
    processes = stack.descendants()
    assert len(processes) >= 6  # five services (some under a shell) and the watchdog
    ports = {
        "REDIS_URL": stack.env["REDIS_URL"],
        "API_PORT": stack.env["API_PORT"],
        "FLOWER_PORT": stack.env["FLOWER_PORT"],
    }
    stack.process.kill()
    killed_at = time.monotonic()
    deadline = killed_at + GONE_S
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    gone_after_s = time.monotonic() - killed_at
    left = [(p.pid, p.name()) for p in processes if alive(p)]
    for process in processes:  # a failing test must not leave them to the next one
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    print(f"\nevery process of the SIGKILLed launcher gone after {gone_after_s:.2f} s")
    assert left == [], f"still running {GONE_S:g} s after the launcher's SIGKILL: {left}"
    assert "celery-stack watchdog: the launcher" in stack.log
    assert not list((stack.log_path.parent / "data").glob("launcher-*.json"))

    again = up(**ports)
    table = again.wait_ready()
    assert {s["state"] for s in table["services"]} == {"ready"}
    assert "stale stack" not in again.log  # the watchdog had cleaned up already
    again.process.send_signal(signal.SIGINT)
    assert again.wait() == 0, again.log[-4000:]


def test_up_stops_a_stale_stack_whose_launcher_and_watchdog_died_before_starting(up):
    stack = up("--only", "redis,worker")
    stack.wait_ready()
    data = stack.log_path.parent / "data"
    (state_file,) = data.glob("launcher-*.json")
    recorded = json.loads(state_file.read_text())
    processes = [p for p in stack.descendants() if p.pid != recorded["watchdog"]["pid"]]
    os.kill(recorded["watchdog"]["pid"], signal.SIGKILL)
    stack.process.kill()
    time.sleep(0.5)
    assert any(alive(p) for p in processes), "nothing was left: the stale case is not tested"

    again = up("--only", "redis,worker", REDIS_URL=stack.env["REDIS_URL"])
    again.wait_ready()
    assert "found a stale stack in" in again.log
    assert "stale stack stopped in" in again.log
    assert [p.pid for p in processes if alive(p)] == []
    assert not state_file.exists()
    again.process.send_signal(signal.SIGINT)
    assert again.wait() == 0, again.log[-4000:]
