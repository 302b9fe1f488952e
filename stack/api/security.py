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
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stack.errors import InsecureSettings
from stack.settings import Settings

API_KEY_HEADER = b"x-api-key"
BEARER = b"bearer "
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths whose answers carry task data: guarded in production (Settings.guards_reads).
PRIVATE_READS = ("/dead-letters", "/task-status", "/queues", "/metrics")
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
        if scope["method"] in STATE_CHANGING_METHODS:
            return True
        path = str(scope.get("path", ""))
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
