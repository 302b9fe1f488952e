"""`up --reload` (on by default in dev) on a project of our own: save, and the new code answers.

The project ("shop") is a Celery app with one task module; its Procfile runs a worker
of its own, the stack's API on it, and a line that runs none of its code. The tests
edit the task module as a developer would and read the answer through the API, and
the launcher's states through its control socket.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from stack.launcher.control import Command, call
from tests.integration.helpers import wait_until, write_project
from tests.integration.test_up import Up, poll_status

pytestmark = pytest.mark.integration

RELOAD_TIMEOUT_S = 90.0  # two loaded cores: a worker's cold start may take a while

TASKS = """
    from shop.app import app


    @app.task(name="shop.answer")
    def answer():
        return {answer!r}
"""
SHOP = {
    "shop/__init__.py": "from shop.app import app\n",
    "shop/app.py": """
        from celery import Celery

        app = Celery("shop", include=["shop.tasks"])
    """,
    "shop/tasks.py": TASKS.format(answer="v1"),
    "Procfile": """
        worker: celery -A shop worker -Q celery -P solo --without-mingle --without-gossip -l INFO
        api: STACK_CELERY_APP=shop:app uvicorn --factory stack.api:create_app --port ${API_PORT}
        idle: python -c "import time; time.sleep(10**6)"
    """,
}


@pytest.fixture
def shop(tmp_path) -> Path:
    return write_project(tmp_path / "shop-project", SHOP)


@pytest.fixture
def up(tmp_path):
    started: list[Up] = []

    def start(*args: str, cwd: Path, **env: str) -> Up:
        started.append(Up(tmp_path, *args, cwd=cwd, **env))
        return started[-1]

    yield start
    for launched in started:
        launched.cleanup()


def save(project: Path, answer: str | None = None, text: str | None = None) -> None:
    """Rewrite the task module as an editor does (a new file's content, one write)."""
    module = project / "shop" / "tasks.py"
    module.write_text(text if text is not None else _dedent(TASKS.format(answer=answer)))


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).lstrip()


def answer(stack: Up) -> object:
    """POST /tasks shop.answer, then its status until it ends: the result it returned."""
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.api_port}", timeout=10) as client:
        accepted = client.post("/tasks", json={"name": "shop.answer", "args": []})
        assert accepted.status_code == 202, accepted.text
        body = poll_status(client, accepted.json()["status_url"], {"success", "failure"})
    assert body["status"] == "success", body
    return body["result"]


def answers(stack: Up, expected: str) -> bool:
    try:
        return answer(stack) == expected
    except (httpx.HTTPError, AssertionError, pytest.fail.Exception):
        return False  # the API or the worker is restarting


def services(stack: Up) -> dict[str, dict]:
    reply = call(Path(stack.env["STACK_DATA_DIR"]), Command("ps"))
    return {row["name"]: row for row in reply["services"]}


def reload_lines(stack: Up) -> list[str]:
    return re.findall(r"reload: .* changed: restarting .*", stack.log)


def test_a_saved_task_module_answers_with_its_new_code_through_the_api(up, shop):
    stack = up(cwd=shop)
    stack.wait_ready()
    assert answer(stack) == "v1"
    save(shop, "v2")
    wait_until(lambda: answers(stack, "v2"), RELOAD_TIMEOUT_S, "the new code's answer")
    assert reload_lines(stack), stack.log[-3000:]


def test_a_save_that_breaks_an_import_fails_that_service_only_and_a_good_save_heals_it(up, shop):
    stack = up(cwd=shop)
    stack.wait_ready()
    before = services(stack)
    save(shop, text="import shop_no_such_module\n")
    wait_until(
        lambda: services(stack)["worker"]["state"] == "failed",
        RELOAD_TIMEOUT_S,
        "the worker marked failed",
    )
    assert "shop_no_such_module" in stack.log
    now = services(stack)
    assert now["redis"]["pid"] == before["redis"]["pid"] and now["redis"]["state"] == "ready"
    wait_until(lambda: services(stack)["idle"]["state"] == "ready", RELOAD_TIMEOUT_S, "idle")
    assert stack.process.poll() is None, "up stopped the stack for one broken service"
    save(shop, "v3")
    wait_until(lambda: answers(stack, "v3"), RELOAD_TIMEOUT_S, "the healed worker's answer")
    assert services(stack)["worker"]["state"] == "ready"


def test_a_burst_of_saves_is_one_restart(up, shop):
    stack = up(cwd=shop)
    stack.wait_ready()
    restarts = services(stack)["worker"]["restarts"]
    for n in range(6):  # save, format-on-save, save again...
        save(shop, f"burst-{n}")
        time.sleep(0.02)
    wait_until(lambda: answers(stack, "burst-5"), RELOAD_TIMEOUT_S, "the last save's answer")
    time.sleep(2.0)  # a second restart for the same burst would have been posted by now
    assert len(reload_lines(stack)) == 1, reload_lines(stack)
    assert services(stack)["worker"]["restarts"] == restarts + 1


def test_no_reload_leaves_the_running_code_alone(up, shop):
    stack = up("--no-reload", cwd=shop)
    stack.wait_ready()
    save(shop, "v2")
    time.sleep(3.0)  # a reload would have started by now
    assert answer(stack) == "v1"
    assert not reload_lines(stack)
