"""API security: an API key on every state-changing request and, in production, on every read
of task data; and a request-body ceiling.

One ASGI middleware rather than a dependency per route: every POST, PUT, PATCH
and DELETE is protected, including routes added later by other routers, so a
forgotten ``Depends`` cannot open a hole. In production, reads under
PRIVATE_READS (arguments, results, tracebacks, queue and metric names) need the
key as well, unless STACK_API_OPEN_READS says an access control of the
operator's own guards the API; ``/health``, ``/ready`` and the docs stay open
for probes. The key comes as ``X-API-Key`` or, for scrapers such as Prometheus
that only send an ``Authorization`` header, as ``Authorization: Bearer <key>``.

The body ceiling is checked on ``Content-Length`` and again on the bytes that
actually arrive (a chunked upload has no length), before the app sees any.

The dashboard under ``/ui`` cannot send a header a script never holds, so it
authenticates otherwise (:class:`UISessions`): a login form trades the key for
a signed session cookie (HttpOnly, SameSite=Strict), and every state change
under ``/ui`` carries a CSRF token derived from that cookie, in dev as well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stack.errors import InsecureSettings
from stack.settings import Settings

API_KEY_HEADER = b"x-api-key"
BEARER = b"bearer "
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths whose answers carry task data: guarded in production (Settings.guards_reads).
PRIVATE_READS = ("/dead-letters", "/task-status", "/queues", "/metrics")
UI_PREFIX = "/ui"  # the dashboard: its own session and CSRF checks (UISessions)
SESSION_COOKIE = "stack_ui_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"  # the login form's field
SESSION_MAX_AGE_S = 8 * 3600
NEEDS_KEY = "missing or wrong API key: send X-API-Key (or Authorization: Bearer) = STACK_API_KEY"


class SecurityMiddleware:
    """401 without the right ``X-API-Key`` on state-changing requests; 413 past the ceiling."""

    def __init__(
        self, app: ASGIApp, api_key: str | None, max_body_bytes: int, guard_reads: bool = False
    ) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.guard_reads = guard_reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._needs_key(scope) and not self._authorised(scope):
            await _answer(send, 401, NEEDS_KEY)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _answer(send, 413, self._too_large())
            return
        if scope["method"] not in STATE_CHANGING_METHODS:
            await self.app(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            await _answer(send, 413, self._too_large())
            return
        await self.app(scope, _replay(body, receive), send)

    def _needs_key(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        if path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
            return False  # the dashboard checks its session cookie and CSRF token itself
        if scope["method"] in STATE_CHANGING_METHODS:
            return True
        return self.guard_reads and any(
            path == p or path.startswith(p + "/") for p in PRIVATE_READS
        )

    def _authorised(self, scope: Scope) -> bool:
        if self.api_key is None:
            return True
        headers = dict(scope["headers"])
        given = headers.get(API_KEY_HEADER)
        if given is None:
            authorization = headers.get(b"authorization", b"")
            if authorization[: len(BEARER)].lower() == BEARER:
                given = authorization[len(BEARER) :].strip()
        return hmac.compare_digest(given or b"", self.api_key)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the ceiling."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self) -> str:
        return (
            f"request body larger than {self.max_body_bytes} bytes "
            "(the ceiling is STACK_MAX_BODY_BYTES)"
        )


def _content_length(scope: Scope) -> int | None:
    raw = dict(scope["headers"]).get(b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the buffered body over once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": payload})


def install_security(api: Any, settings: Settings) -> None:
    """Wrap a FastAPI/Starlette app with the middleware, configured from settings.

    An API of the production profile refuses to exist without a key, however it is
    started (launcher, container, a bare ``uvicorn``).
    """
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if settings.profile == "production" and not key:
        raise InsecureSettings(
            "refusing to start the production API without an API key: set STACK_API_KEY"
        )
    api.add_middleware(
        SecurityMiddleware,
        api_key=key or None,
        max_body_bytes=settings.max_body_bytes,
        guard_reads=settings.guards_reads,
    )


@dataclass(frozen=True)
class Session:
    """A dashboard session: a random nonce (the CSRF token's seed), signed by the API."""

    nonce: str
    issued_at: int
    authenticated: bool


class UISessions:
    """Signs the dashboard's session cookies and CSRF tokens (HMAC-SHA256, stdlib).

    With an API key (always in production) the login form must be passed: the
    secret derives from the key, so every API process accepts the same cookie and
    changing the key logs everyone out. Without one (dev on loopback) the
    dashboard is open, and a per-process secret still signs the CSRF tokens.
    """

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key.encode() if api_key else None
        self.login_required = self.api_key is not None
        self.secret = (
            hmac.new(self.api_key, b"celery-stack dashboard session", hashlib.sha256).digest()
            if self.api_key
            else secrets.token_bytes(32)
        )

    def key_matches(self, given: str) -> bool:
        return self.api_key is not None and hmac.compare_digest(given.encode(), self.api_key)

    def issue(self, authenticated: bool) -> str:
        """A new cookie value (a new nonce each time: a login never keeps the old session)."""
        payload = f"{secrets.token_urlsafe(16)}.{int(time.time())}.{int(authenticated)}"
        return f"{payload}.{self._mac(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session in ``cookie``; None when absent, forged or older than its max age."""
        if not cookie or cookie.count(".") != 3:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        nonce, issued, authenticated = payload.split(".")
        if not issued.isdigit() or time.time() - int(issued) > SESSION_MAX_AGE_S:
            return None
        return Session(nonce, int(issued), authenticated == "1")

    def allows(self, session: Session | None) -> bool:
        """Whether ``session`` may see the dashboard."""
        return not self.login_required or (session is not None and session.authenticated)

    def csrf_token(self, session: Session) -> str:
        return self._mac(f"csrf:{session.nonce}")

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        return (
            session is not None
            and bool(token)
            and hmac.compare_digest(str(token), self.csrf_token(session))
        )

    def _mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()
