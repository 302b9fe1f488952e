"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the API
served by uvicorn, a real Redis and a real worker.

Chromium missing is a failure naming the fix, never a skip: CI installs it (.ci/run).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from stack.api.app import create_app
from stack.deadletter import DeadLetter
from stack.submit import submit
from stack.task_status import task_status
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_settings_overrides(tmp_path):
    return {"STACK_DATA_DIR": str(tmp_path / "data")}  # uploads of the test, not the checkout's


CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "browser-test-key-long-enough"
SCRIPT = "<script>alert('xss')</script>"
REPORTS = Path(__file__).resolve().parents[2] / "reports"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the dashboard's browser tests need it "
            "(apt-get install -y chromium chromium-driver; .ci/run does)",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        # A fresh profile per module: launch_persistent_context gives it a user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=ARGS, headless=True
        )
        yield context
        context.close()


class Served:
    """The API on a free loopback port, in a thread of this process."""

    def __init__(self, api: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(api, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> Served:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "uvicorn to start")
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture
def served(stack_app, stack_settings) -> Iterator[Served]:
    with Served(create_app(stack_settings, stack_app)) as server:
        yield server


class Page:
    """A fresh tab that collects console errors, page errors and dialogs."""

    def __init__(self, context: Any) -> None:
        context.clear_cookies()
        self.page = context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept()

    def close(self) -> None:
        self.page.close()

    def shown_problem(self) -> str:
        """The dashboard's error banner, "" when hidden (a failed refresh shows there)."""
        box = self.page.locator("#problem")
        return box.inner_text() if box.count() and box.is_visible() else ""


@pytest.fixture
def tab(browser) -> Iterator[Page]:
    tab = Page(browser)
    yield tab
    tab.close()


def screenshot(page: Any, name: str) -> Path:
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_overview_loads_with_redis_and_workers_at_1280x800_and_narrow(
    tab, served, stack_worker, stack_dead_letters
):
    worker = stack_worker(concurrency=1)
    page = tab.page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(served.url + "/ui")
    page.wait_for_selector("#redis dd")
    assert page.locator("#redis").inner_text().startswith("version")
    page.wait_for_function("document.querySelectorAll('#workers tbody td').length >= 4")
    assert worker.hostname in page.locator("#workers tbody").inner_text()
    assert page.locator("#chart svg").count() == 1
    page.wait_for_selector("#services tbody td")
    assert tab.shown_problem() == ""
    screenshot(page, "dashboard-overview.png")
    page.set_viewport_size({"width": 400, "height": 800})
    page.goto(served.url + "/ui#queues")
    page.wait_for_selector("#queue-table tbody td")
    page.wait_for_selector("#limited tbody td")
    assert tab.shown_problem() == ""
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 400, f"the narrow page scrolls sideways ({scroll_width} px)"
    page.keyboard.press("Tab")  # the first link takes the focus: actions are reachable
    assert page.evaluate("document.activeElement.tagName") == "A"
    assert tab.errors == []


def test_a_dead_letter_shows_opens_and_is_replayed_by_a_click_and_its_task_succeeds(
    tab, served, stack_app, stack_settings, stack_worker, stack_dead_letters
):
    stack_worker(concurrency=1)
    # A real failure the operator can fix: the upload is missing (a non-retryable error).
    upload = f"ui-test-{uuid.uuid4().hex}.csv"  # the data dir outlives a test: a new name
    task_id = submit(stack_app, "files.process_csv", kwargs={"path": upload})
    wait_until(lambda: stack_dead_letters.count() == 1, 60, "the task to be dead-lettered")
    uploads = stack_settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / upload).write_text("a,b\n1,2\n")  # fixed: now the replay can succeed

    page = tab.page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(served.url + "/ui#dead-letters")
    row = page.locator("#dl-table tbody tr", has_text="files.process_csv")
    row.wait_for()
    assert "InvalidInput" in row.inner_text()
    assert tab.shown_problem() == ""
    screenshot(page, "dashboard-dead-letters.png")
    row.get_by_role("link", name="open").click()
    page.wait_for_selector("#record")
    assert task_id in page.locator("#record").inner_text()
    assert "no such upload" in page.locator("#traceback").inner_text()
    page.get_by_role("button", name="Replay").click()
    replayed = page.locator("#replayed-task")
    replayed.wait_for()
    new_id = replayed.inner_text()
    assert new_id and new_id != task_id
    wait_until(
        lambda: task_status(stack_app, new_id).status == "success", 60, "the replay to succeed"
    )
    replayed.click()  # the task lookup shows the API's status of the new task
    page.wait_for_function("document.getElementById('task-result').textContent.includes('success')")
    assert tab.errors == []


def test_an_argument_holding_a_script_renders_as_text(tab, served, stack_dead_letters):
    record = DeadLetter(
        task_id="t-xss",
        name="diagnostics.echo",
        args=[SCRIPT],
        kwargs={"img": "<img src=x onerror=alert(2)>"},
        queue="default",
        priority="normal",
        exception_type="RuntimeError",
        exception_message=SCRIPT,
        reason="never retried",
        attempts=1,
        first_failure_at=1.0,
        last_failure_at=1.0,
    )
    record_id, _ = stack_dead_letters.add(record)
    page = tab.page
    page.goto(served.url + "/ui#dead-letters")
    row = page.locator("#dl-table tbody tr", has_text="diagnostics.echo")
    row.wait_for()
    assert SCRIPT in row.inner_text()
    assert page.locator("#dl-table script, #dl-table img").count() == 0
    page.goto(f"{served.url}/ui/dead-letters/{record_id}")
    assert SCRIPT in page.locator("#args").inner_text()
    assert "<img src=x" in page.locator("#kwargs").inner_text()
    assert page.locator("#record script, #record img").count() == 0
    assert tab.dialogs == [], f"task data ran as code: {tab.dialogs}"
    assert tab.errors == []


def test_a_forged_post_without_the_csrf_token_is_refused(tab, served, stack_dead_letters):
    stack_dead_letters.add(
        DeadLetter(
            task_id="t-1",
            name="diagnostics.echo",
            queue="default",
            priority="normal",
            exception_type="RuntimeError",
            exception_message="boom",
            reason="never retried",
            attempts=1,
            first_failure_at=1.0,
            last_failure_at=1.0,
        )
    )
    page = tab.page
    page.goto(served.url + "/ui#dead-letters")
    page.wait_for_selector("#dl-table tbody td")
    status = page.evaluate(
        "fetch('/ui/api/dead-letters/purge', {method: 'POST', credentials: 'same-origin'})"
        ".then(r => r.status)"
    )
    assert status == 403
    assert stack_dead_letters.count() == 1
    # The dashboard's own purge carries the token: confirmed, it goes through.
    page.get_by_role("button", name="Purge all").click()
    wait_until(lambda: stack_dead_letters.count() == 0, 30, "the purge")
    assert tab.dialogs == ["confirm: Delete every dead letter for good?"]
    assert [e for e in tab.errors if "403" not in e] == []


def test_production_login_refuses_a_wrong_key_and_sets_a_strict_httponly_cookie(
    tab, browser, stack_app, stack_settings
):
    settings = stack_settings.model_copy(
        update={"profile": "production", "api_key": SecretStr(KEY), "api_open_reads": False}
    )
    with Served(create_app(settings, stack_app)) as server:
        page = tab.page
        page.goto(server.url + "/ui")
        assert page.url.endswith("/ui/login")
        page.fill("#api_key", "wrong")
        page.keyboard.press("Enter")
        page.wait_for_selector("#login-error")
        assert "wrong API key" in page.locator("#login-error").inner_text()
        page.fill("#api_key", KEY)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("#redis dd")
        assert page.url.endswith("/ui")
        cookies = [c for c in browser.cookies() if c["name"] == "stack_ui_session"]
        assert len(cookies) == 1
        assert cookies[0]["httpOnly"] is True and cookies[0]["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # no script can read it
    assert [e for e in tab.errors if "401" not in e] == []


def teardown_module() -> None:
    """The overview screenshot doubles as the README's picture (docs/dashboard.png)."""
    shot = REPORTS / "dashboard-overview.png"
    if shot.exists():
        shutil.copy(shot, REPORTS / "dashboard.png")
