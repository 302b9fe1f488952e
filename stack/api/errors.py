"""Errors at the HTTP boundary: one JSON shape (``{"detail": ...}``), one status per error class.

Every deliberate StackError maps to a status here (most specific class wins);
a raw Redis or kombu error that escaped a module is translated once, by
:func:`stack.connection.unavailable`, into the same 503 as BrokerUnavailable.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stack.connection import REDIS_ERRORS, unavailable
from stack.context import context_of
from stack.errors import (
    ArgumentsTooDeep,
    BrokerUnavailable,
    DeadLetterNotFound,
    ReplayInProgress,
    SettingsError,
    StackError,
    UnknownQueue,
    UnknownTask,
)

# An unknown queue or arguments nested too deep are 422, like any other invalid value in the body.
ERROR_STATUS: dict[type[StackError], int] = {
    UnknownTask: 404,
    DeadLetterNotFound: 404,
    ReplayInProgress: 409,
    UnknownQueue: 422,
    ArgumentsTooDeep: 422,
    BrokerUnavailable: 503,
    SettingsError: 500,
}
DEFAULT_ERROR_STATUS = 500

REDIS_DOWN: dict[int | str, dict[str, Any]] = {503: {"description": "Redis down"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown dead-letter id"},
    **REDIS_DOWN,
}


def status_code_for(exc: StackError) -> int:
    """The HTTP status of a StackError: the nearest class in ERROR_STATUS."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return DEFAULT_ERROR_STATUS


async def _stack_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StackError)
    return JSONResponse({"detail": str(exc)}, status_code=status_code_for(exc))


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    """A raw Redis/kombu error that escaped a module: still a 503 with the one message."""
    url = context_of(request.app.state.celery).settings.broker_url
    error = unavailable(exc, url, f"{request.method} {request.url.path}")
    return JSONResponse({"detail": str(error)}, status_code=503)


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(StackError, _stack_error)
    for error in REDIS_ERRORS:
        if issubclass(error, Exception):  # all of them; Starlette takes Exception classes only
            api.add_exception_handler(error, _redis_error)
