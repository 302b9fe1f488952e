"""The dashboard's routes without a browser: escaping of server-rendered pages, CSRF on every
state change, the session cookie's flags, the production login, filtered listings."""

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from stack.api.app import create_app
from stack.api.security import SESSION_COOKIE
from stack.deadletter import DeadLetter, DeadLetterStore

pytestmark = pytest.mark.integration

KEY = "dashboard-key-that-is-long-enough"
SCRIPT = "<script>alert('x')</script>"


def add_record(store: DeadLetterStore, n: int, **fields) -> str:
    body = {
        "task_id": f"failed-{n}",
        "name": "diagnostics.echo",
        "args": [f"value-{n}"],
        "queue": "default",
        "priority": "normal",
        "exception_type": "stack.tasks.diagnostics.DiagnosticFailure",
        "exception_message": "boom",
        "reason": "gave up after 4 attempts",
        "attempts": 4,
        "first_failure_at": 1.0,
        "last_failure_at": 2.0,
        **fields,
    }
    record_id, created = store.add(DeadLetter(**body))
    assert created
    return record_id


def csrf_of(page_html: str) -> str:
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page_html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def cookie_header(response) -> str:
    headers = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    assert headers, "no Set-Cookie"
    return headers[-1]


@pytest.fixture
def dev(stack_app, stack_settings):
    with TestClient(create_app(stack_settings, stack_app)) as client:
        yield client


@pytest.fixture
def production(stack_app, stack_settings):
    settings = stack_settings.model_copy(
        update={"profile": "production", "api_key": SecretStr(KEY), "api_open_reads": False}
    )
    with TestClient(create_app(settings, stack_app)) as client:
        yield client


def test_the_dashboard_opens_in_dev_with_a_strict_httponly_cookie_and_a_csp(dev):
    response = dev.get("/ui")
    assert response.status_code == 200
    cookie = cookie_header(response).lower()
    assert cookie.startswith(SESSION_COOKIE + "=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert '<script src="/ui/static/dashboard.js">' in response.text
    assert dev.get("/ui/static/dashboard.js").status_code == 200


def test_a_state_change_without_the_csrf_token_is_403_and_changes_nothing(dev, stack_dead_letters):
    record_id = add_record(stack_dead_letters, 1)
    dev.get("/ui")  # the browser has a session cookie: the token is what is missing
    for path in (
        "/ui/api/dead-letters/purge",
        f"/ui/api/dead-letters/{record_id}/delete",
        f"/ui/api/dead-letters/{record_id}/replay",
        "/ui/api/dead-letters/replay-all",
    ):
        refused = dev.post(path)
        assert refused.status_code == 403, path
        assert "CSRF" in refused.json()["detail"]
        forged = dev.post(path, headers={"X-CSRF-Token": "0" * 64})
        assert forged.status_code == 403, path
    assert stack_dead_letters.count() == 1
    assert not stack_dead_letters.get(record_id).replays


def test_a_token_of_another_session_is_refused(dev, stack_app, stack_settings, stack_dead_letters):
    add_record(stack_dead_letters, 1)
    token = csrf_of(dev.get("/ui").text)
    with TestClient(create_app(stack_settings, stack_app)) as other:
        other.get("/ui")
        assert (
            other.post("/ui/api/dead-letters/purge", headers={"X-CSRF-Token": token}).status_code
            == 403
        )
    assert stack_dead_letters.count() == 1


def test_with_the_token_a_purge_and_a_delete_go_through(dev, stack_dead_letters):
    first, second = add_record(stack_dead_letters, 1), add_record(stack_dead_letters, 2)
    token = {"X-CSRF-Token": csrf_of(dev.get("/ui").text)}
    assert dev.post(f"/ui/api/dead-letters/{first}/delete", headers=token).status_code == 200
    assert stack_dead_letters.count() == 1
    assert dev.post("/ui/api/dead-letters/purge", headers=token).json() == {"purged": 1}
    assert stack_dead_letters.count() == 0
    assert dev.post(f"/ui/api/dead-letters/{second}/delete", headers=token).status_code == 404


def test_the_detail_page_escapes_task_data(dev, stack_dead_letters):
    record_id = add_record(
        stack_dead_letters,
        1,
        args=[SCRIPT],
        kwargs={"html": "<img src=x onerror=alert(1)>"},
        exception_message=SCRIPT,
        traceback=f"Traceback\n  {SCRIPT}",
    )
    page = dev.get(f"/ui/dead-letters/{record_id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text


def test_an_unknown_record_is_404(dev):
    assert dev.get("/ui/dead-letters/nope").status_code == 404


def test_the_listing_filters_by_task_name_and_error_type(dev, stack_dead_letters):
    for n in range(3):
        add_record(stack_dead_letters, n)
    add_record(stack_dead_letters, 10, name="files.process_csv", exception_type="x.InvalidInput")
    everything = dev.get("/ui/api/dead-letters").json()
    assert everything["total"] == 4
    by_name = dev.get("/ui/api/dead-letters", params={"name": "files.process_csv"}).json()
    assert [i["task_id"] for i in by_name["items"]] == ["failed-10"] and by_name["total"] == 1
    by_error = dev.get("/ui/api/dead-letters", params={"error": "DiagnosticFailure", "limit": 2})
    assert by_error.json()["total"] == 3 and len(by_error.json()["items"]) == 2
    newest_first = [i["task_id"] for i in by_error.json()["items"]]
    assert newest_first == ["failed-2", "failed-1"]
    none = dev.get(
        "/ui/api/dead-letters", params={"name": "diagnostics.echo", "error": "InvalidInput"}
    )
    assert none.json() == {"total": 0, "offset": 0, "limit": 25, "items": []}


def test_replay_all_matching_a_filter_replays_only_those(dev, stack_dead_letters):
    echo = add_record(stack_dead_letters, 1)
    csv = add_record(stack_dead_letters, 2, name="files.process_csv", exception_type="InvalidInput")
    token = {"X-CSRF-Token": csrf_of(dev.get("/ui").text)}
    answer = dev.post("/ui/api/dead-letters/replay-all?error=InvalidInput", headers=token)
    assert answer.json() == {"replayed": 1}
    assert stack_dead_letters.get(csv).replays and not stack_dead_letters.get(echo).replays


def test_production_needs_the_login_and_refuses_a_wrong_key(production):
    assert production.get("/ui", follow_redirects=False).headers["location"] == "/ui/login"
    assert production.get("/ui/api/dead-letters").status_code == 401
    token = csrf_of(production.get("/ui/login").text)
    wrong = production.post("/ui/login", data={"api_key": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong API key" in wrong.text
    no_token = production.post("/ui/login", data={"api_key": KEY})
    assert no_token.status_code == 403
    right = production.post(
        "/ui/login", data={"api_key": KEY, "csrf_token": token}, follow_redirects=False
    )
    assert right.status_code == 303 and right.headers["location"] == "/ui"
    cookie = cookie_header(right).lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert production.get("/ui").status_code == 200
    assert production.get("/ui/api/dead-letters").status_code == 200
    # The pre-login token died with the pre-login session: a new one is needed to act.
    assert (
        production.post("/ui/api/dead-letters/purge", headers={"X-CSRF-Token": token}).status_code
        == 403
    )


def test_a_forged_session_cookie_is_refused(production):
    production.cookies.set(SESSION_COOKIE, "abc.1.1.deadbeef", path="/ui")
    assert production.get("/ui/api/overview").status_code == 401


def test_the_public_api_still_needs_the_key_for_state_changes(production, stack_dead_letters):
    record_id = add_record(stack_dead_letters, 1)
    assert production.post(f"/dead-letters/{record_id}/replay").status_code == 401


def test_overview_and_queues_answer_from_the_stack(dev, stack_dead_letters):
    add_record(stack_dead_letters, 1)
    overview = dev.get("/ui/api/overview").json()
    assert overview["redis"]["version"]
    assert overview["queues"]["dead_letters"] == 1
    assert overview["workers"] == []
    assert overview["services"] is None  # no `up` answers on this data dir's control socket
    queues = dev.get("/ui/api/queues").json()
    assert set(queues["queues"]["default"]) == {"critical", "high", "normal", "low"}
    assert any(t["task"] == "diagnostics.limited" for t in queues["rate_limited"])
