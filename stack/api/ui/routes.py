"""The dashboard's routes under ``/ui``: its pages, the JSON its script polls, its actions.

Reads and actions go through the same functions as the API and the CLI
(:mod:`stack.api.ui.data`, the dead-letter store, :mod:`stack.submit`,
:mod:`stack.task_status`). Who may call them is decided here, once:
:func:`session_of` (the signed cookie; login when an API key is set) and
:func:`checked_action` (a CSRF token on every state change, in dev too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from stack.api.dependencies import CeleryDep, StoreDep
from stack.api.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    UI_PREFIX,
    Session,
    UISessions,
)
from stack.api.ui import data
from stack.settings import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from stack.submit import replay_all, replay_record
from stack.task_status import task_status

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescape on for .html
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
REFUSED_CSRF = "missing or wrong CSRF token: reload the dashboard and try again"
NEEDS_LOGIN = "log in to the dashboard first (/ui/login)"

router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)


def sessions(request: Request) -> UISessions:
    found: UISessions = request.app.state.ui_sessions
    return found


def session_of(request: Request) -> Session | None:
    return sessions(request).read(request.cookies.get(SESSION_COOKIE))


def allowed(request: Request) -> Session | None:
    """For the JSON reads: 401 unless the session may see the dashboard."""
    session = session_of(request)
    if not sessions(request).allows(session):
        raise HTTPException(401, NEEDS_LOGIN)
    return session


def checked_action(request: Request) -> Session:
    """For every state change: a session that may act and its CSRF token in the header."""
    session = allowed(request)
    if session is None or not sessions(request).csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, REFUSED_CSRF)
    return session


Reader = Annotated[Session | None, Depends(allowed)]
Actor = Annotated[Session, Depends(checked_action)]


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A rendered page with the headers every dashboard page carries, and a session cookie
    (a fresh one when the browser has none yet: the CSRF token needs its nonce)."""
    session = session_of(request)
    cookie = None
    if session is None:
        cookie = sessions(request).issue(authenticated=False)
        session = sessions(request).read(cookie)
    assert session is not None
    body = {"csrf_token": sessions(request).csrf_token(session), **context}
    response = templates.TemplateResponse(request, name, body, status_code=status)
    if cookie is not None:
        set_session(request, response, cookie)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def set_session(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_MAX_AGE_S,
        path=UI_PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.get("", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    if not sessions(request).allows(session_of(request)):
        return RedirectResponse(f"{UI_PREFIX}/login", status_code=303)
    return page(request, "dashboard.html", {"login_required": sessions(request).login_required})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return page(request, "login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """The API key for a session cookie; the form carries the pre-login session's CSRF token."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    if not sessions(request).csrf_ok(session_of(request), form.get(CSRF_FIELD)):
        return page(request, "login.html", {"error": REFUSED_CSRF}, status=403)
    if not sessions(request).login_required:
        return RedirectResponse(UI_PREFIX, status_code=303)  # dev without a key: nothing to do
    if not sessions(request).key_matches(form.get("api_key", "")):
        return page(request, "login.html", {"error": "wrong API key"}, status=401)
    response = RedirectResponse(UI_PREFIX, status_code=303)
    set_session(request, response, sessions(request).issue(authenticated=True))
    return response


@router.post("/logout")
def logout(_: Actor) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path=UI_PREFIX)
    return response


@router.get("/dead-letters/{record_id}", response_class=HTMLResponse)
def dead_letter_page(request: Request, record_id: str, store: StoreDep) -> Response:
    """One record, rendered server-side (Jinja2 escapes every field)."""
    if not sessions(request).allows(session_of(request)):
        return RedirectResponse(f"{UI_PREFIX}/login", status_code=303)
    record = store.get(record_id)
    shown = {
        "record": record,
        "args_json": json.dumps(record.args, indent=2, default=repr),
        "kwargs_json": json.dumps(record.kwargs, indent=2, default=repr),
    }
    return page(request, "dead_letter.html", shown)


@router.get("/api/overview")
def get_overview(request: Request, app: CeleryDep, _: Reader) -> dict[str, Any]:
    return data.overview(app, request.app.state.ui_throughput)


@router.get("/api/queues")
def get_queues(app: CeleryDep, _: Reader) -> dict[str, Any]:
    return data.queue_detail(app)


@router.get("/api/dead-letters")
def list_dead_letters(
    store: StoreDep,
    _: Reader,
    offset: Annotated[int, Query(ge=0, le=PAGE_OFFSET_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 25,
    name: Annotated[str, Query(max_length=200)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> dict[str, Any]:
    total, records = store.matching(name, error, offset, limit)
    items = [data.summary_of(r) for r in records]
    return {"total": total, "offset": offset, "limit": limit, "items": items}


@router.get("/api/tasks/{task_id}")
def get_task(task_id: str, app: CeleryDep, _: Reader) -> dict[str, Any]:
    return task_status(app, task_id).model_dump()


@router.post("/api/dead-letters/{record_id}/replay")
def replay_one(record_id: str, app: CeleryDep, _: Actor) -> dict[str, Any]:
    replayed = replay_record(app, record_id)
    return {"record_id": record_id, "task_id": replayed.task_id, "created": replayed.created}


@router.post("/api/dead-letters/{record_id}/delete")
def delete_one(record_id: str, store: StoreDep, _: Actor) -> dict[str, Any]:
    store.delete(record_id)
    return {"deleted": record_id}


@router.post("/api/dead-letters/replay-all")
def replay_matching(
    app: CeleryDep,
    store: StoreDep,
    _: Actor,
    name: Annotated[str, Query(max_length=200)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> dict[str, Any]:
    """Replay every record not replayed yet that matches the filter (each exactly once)."""
    if not name and not error:
        return {"replayed": len(replay_all(app))}
    records = store.matching(name, error, 0, store.count())[1]
    created = [replay_record(app, r.id) for r in records if not r.replays]
    return {"replayed": sum(1 for r in created if r.created)}


@router.post("/api/dead-letters/purge")
def purge(store: StoreDep, _: Actor) -> dict[str, Any]:
    return {"purged": store.purge()}
