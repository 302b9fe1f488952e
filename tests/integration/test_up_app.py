"""Bring your own app: `up --app` and `up` on a foreign project's own Procfile.

The project is a ledger of our own making: its Celery app hard-codes a RabbitMQ
broker (``amqp://``) and the RPC result backend, so nothing runs unless the
stack's Redis reaches it through Celery's CELERY_BROKER_URL / CELERY_RESULT_BACKEND;
it sends to Celery's default ``celery`` queue and to a ``reconciliation`` queue of
its own (by ``task_routes``), and beat ticks every second (each tick appends a line
to the file LEDGER_TICKS names). Its own code sends tasks with ``apply_async`` from
a script run with the stack's environment, as a developer would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stack.redis_command import port_is_free
from tests.integration.helpers import write_project
from tests.integration.test_up import Up, clean_environ, gone, poll_status

pytestmark = pytest.mark.integration

LEDGER = {
    "ledger/__init__.py": """
        from ledger.app import app

        __all__ = ["app"]
    """,
    "ledger/app.py": """
        from celery import Celery

        app = Celery(
            "ledger",
            broker="amqp://guest:guest@localhost:5672//",
            backend="rpc://",
            include=["ledger.tasks"],
        )
        app.conf.task_routes = {"ledger.tasks.reconcile": {"queue": "reconciliation"}}
        app.conf.beat_schedule = {
            "tick-every-second": {"task": "ledger.tasks.tick", "schedule": 1.0},
        }
        print("ledger: app loaded")  # on stdout: `up --json`'s first line must stay the table
    """,
    "ledger/tasks.py": """
        import os
        import time

        from ledger.app import app


        @app.task
        def post_entry(account, cents):
            return {"account": account, "balance_cents": cents}


        @app.task
        def reconcile(batch):
            return {"batch": batch, "reconciled": True}


        @app.task
        def tick():
            with open(os.environ["LEDGER_TICKS"], "a") as out:
                out.write(f"{time.time()}\\n")
            return "tick"
    """,
    "send.py": """
        import json

        from ledger.tasks import post_entry, reconcile

        entry = post_entry.apply_async(args=["acct-1", 250])
        batch = reconcile.apply_async(args=["2024-06"])
        print(json.dumps([entry.get(timeout=30), batch.get(timeout=30)]), flush=True)
    """,
    "Procfile": """
        # the ledger's own Procfile: no redis line, its own names, its own app
        jobs: celery -A ledger worker -Q celery,reconciliation --loglevel INFO
        clock: celery -A ledger beat --schedule .ledger-beat --loglevel INFO
        api: STACK_CELERY_APP=ledger:app uvicorn --factory stack.api:create_app --port ${API_PORT}
    """,
}
SENT = [
    {"account": "acct-1", "balance_cents": 250},
    {"batch": "2024-06", "reconciled": True},
]


@pytest.fixture
def up(tmp_path):
    """`python -m stack up --json` (test_up's Up) in a directory of the test's choosing."""
    started: list[Up] = []

    def start(*args: str, cwd: Path, **env: str) -> Up:
        started.append(Up(tmp_path, *args, cwd=cwd, **env))
        return started[-1]

    yield start
    for launched in started:
        launched.cleanup()


@pytest.fixture
def ledger(tmp_path) -> Path:
    return write_project(tmp_path / "ledger-project", LEDGER)


def send_from_the_projects_code(project: Path, stack: Up) -> subprocess.CompletedProcess[str]:
    """`python send.py` in the project, its shell pointed at the stack's Redis."""
    env = {
        **clean_environ(),
        "CELERY_BROKER_URL": stack.env["REDIS_URL"],
        "CELERY_RESULT_BACKEND": stack.env["REDIS_URL"],
    }
    env.pop("PYTHONPATH", None)  # the project's own code needs nothing of ours
    return subprocess.run(
        [sys.executable, "send.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def post_and_wait(stack: Up, name: str, args: list[object]) -> dict:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}", timeout=10) as client:
        accepted = client.post("/tasks", json={"name": name, "args": args})
        assert accepted.status_code == 202, accepted.text
        return poll_status(client, accepted.json()["status_url"], {"success", "failure"})


def ticks(path: Path, at_least: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        count = len(path.read_text().splitlines()) if path.exists() else 0
        if count >= at_least:
            break
        time.sleep(0.2)
    return count


def stop_and_leave_nothing(stack: Up) -> None:
    processes = stack.descendants()
    stack.process.send_signal(signal.SIGINT)
    assert stack.wait() == 0, stack.log[-4000:]
    assert [p.pid for p in processes if not gone(p)] == []
    for port in (stack.redis_port, stack.api_port):
        assert port_is_free(port), f"port {port} still taken"


def test_up_app_runs_a_foreign_project_without_a_procfile(up, ledger, tmp_path):
    tick_file = tmp_path / "ticks"
    stack = up("--app", "ledger", cwd=ledger, LEDGER_TICKS=str(tick_file))
    table = stack.wait_ready()
    names = [s["name"] for s in table["services"]]
    assert names == ["redis", "api", "worker", "beat", "flower"], stack.log[-3000:]
    assert {s["state"] for s in table["services"]} == {"ready"}
    assert table["warnings"] == []

    sent = send_from_the_projects_code(ledger, stack)
    assert sent.returncode == 0, sent.stderr[-3000:] + stack.log[-3000:]
    assert json.loads(sent.stdout.splitlines()[-1]) == SENT
    done = post_and_wait(stack, "ledger.tasks.reconcile", ["2024-07"])
    assert (done["status"], done["result"]) == ("success", {"batch": "2024-07", "reconciled": True})
    assert post_and_wait(stack, "ledger.tasks.post_entry", ["acct-2", 5])["status"] == "success"
    assert ticks(tick_file, 2) >= 2, "the periodic task never ran twice"

    stop_and_leave_nothing(stack)


def test_up_app_names_a_queue_its_worker_does_not_consume(up, ledger, tmp_path):
    stack = up(
        "--app", "ledger", "--only", "redis,worker", cwd=ledger, STACK_WORKER_QUEUES="celery"
    )
    table = stack.wait_ready()
    (warning,) = table["warnings"]
    assert "queue 'reconciliation' is consumed by no worker of this stack" in warning
    assert "WARNING: queue 'reconciliation'" in stack.log
    stop_and_leave_nothing(stack)


def test_up_runs_the_projects_own_procfile_on_the_stacks_redis(up, ledger, tmp_path):
    tick_file = tmp_path / "ticks"
    stack = up(cwd=ledger, LEDGER_TICKS=str(tick_file))
    table = stack.wait_ready()
    assert [s["name"] for s in table["services"]] == ["redis", "jobs", "clock", "api"]
    assert {s["state"] for s in table["services"]} == {"ready"}
    assert "no redis line: the stack serves Redis at" in stack.log
    assert table["broker"] == stack.env["REDIS_URL"]
    assert table["warnings"] == []
    jobs = table["services"][1]["url"]  # gated on a ping to the node name it was given
    assert jobs.startswith("jobs-") and f"jobs ready (celery ping to {jobs})" in stack.log
    assert "clock ready" in stack.log

    sent = send_from_the_projects_code(ledger, stack)
    assert sent.returncode == 0, sent.stderr[-3000:] + stack.log[-3000:]
    assert json.loads(sent.stdout.splitlines()[-1]) == SENT
    done = post_and_wait(stack, "ledger.tasks.reconcile", ["2024-08"])
    assert done["status"] == "success", done
    assert ticks(tick_file, 2) >= 2, "the periodic task never ran twice"

    stop_and_leave_nothing(stack)


def test_up_without_a_procfile_or_an_app_says_how_to_give_one(up, tmp_path):
    empty = tmp_path / "empty-project"
    empty.mkdir()
    stack = up(cwd=empty)
    assert stack.wait() == 1
    assert "no Procfile in" in stack.log and "--app MODULE[:ATTR]" in stack.log
    assert "Traceback" not in stack.log
    assert os.listdir(empty) == []


def test_up_names_the_queue_a_procfiles_worker_leaves_unconsumed(up, ledger):
    procfile = ledger / "Procfile.celery-only"
    procfile.write_text("jobs: celery -A ledger worker -Q celery --loglevel INFO\n")
    stack = up("--procfile", str(procfile), cwd=ledger)
    table = stack.wait_ready()
    (warning,) = table["warnings"]
    assert "queue 'reconciliation' is consumed by no worker of this stack" in warning
    assert "(-Q celery)" in warning and "task_routes" in warning
    stop_and_leave_nothing(stack)
