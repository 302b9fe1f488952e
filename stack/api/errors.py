"""Errors at the HTTP boundary: one JSON shape for every error, one status per error class.

Every error body is an :class:`ErrorBody`: ``{"detail": "<what is wrong and how to fix
it>"}``, plus ``errors`` (one item per bad field) when the request did not validate.
FastAPI's own errors are answered in that shape too: its 422 (``detail`` a list there),
its 400 for a body that does not parse (a 422 here, like any bad body), its 404 and 405.

Every deliberate StackError maps to a status here (most specific class wins); a raw
Redis or kombu error that escaped a module is translated once, by
:func:`stack.connection.unavailable`, into the same 503 as BrokerUnavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from stack.api.rendering import StackJSONResponse
from stack.api.security import STATE_CHANGING_METHODS
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
PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
SHOWN_ERRORS = 5  # field errors spelled out in ``detail``; all of them are in ``errors``
BODY_PARSE_FAILED = "There was an error parsing the body"  # FastAPI's 400 (a 422 here)


class FieldError(BaseModel):
    """One invalid value of a request: where it is, what is wrong, pydantic's error type."""

    loc: list[str | int] = Field(description='where, e.g. ["body", "args"] or ["query", "limit"]')
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error the API answers (4xx and 5xx)."""

    detail: str = Field(description="what is wrong and how to fix it")
    errors: list[FieldError] | None = Field(
        None, description="request validation errors only (422): one item per invalid value"
    )


def error_response(description: str) -> dict[str, Any]:
    """One entry of a route's ``responses``: ``description``, answered with ErrorBody."""
    return {"model": ErrorBody, "description": description}


REDIS_DOWN: dict[int | str, dict[str, Any]] = {
    503: error_response("Redis did not answer (the message names it and what to check)")
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_response("unknown dead-letter id"),
    **REDIS_DOWN,
}


def status_code_for(exc: StackError) -> int:
    """The HTTP status of a StackError: the nearest class in ERROR_STATUS."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return DEFAULT_ERROR_STATUS


def answer(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return StackJSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _stack_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StackError)
    return answer(status_code_for(exc), str(exc))


async def _redis_error(request: Request, exc: Exception) -> Response:
    """A raw Redis/kombu error that escaped a module: still a 503 with the one message."""
    url = context_of(request.app.state.celery).settings.broker_url
    error = unavailable(exc, url, f"{request.method} {request.url.path}")
    return answer(503, str(error))


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, in the one shape: a sentence in ``detail``, the items in ``errors``."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(loc=list(e.get("loc", ())), msg=_message(e), type=str(e["type"]))
        for e in exc.errors()
    ]
    listed = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors[:SHOWN_ERRORS])
    more = f" (and {len(errors) - SHOWN_ERRORS} more)" if len(errors) > SHOWN_ERRORS else ""
    body = ErrorBody(detail=f"invalid request: {listed}{more}", errors=errors)
    return StackJSONResponse(body.model_dump(), status_code=422)


def _message(error: Mapping[str, Any]) -> str:
    """pydantic's message; for a body that is not JSON, with the decoder's reason."""
    reason = (error.get("ctx") or {}).get("error")
    message = str(error.get("msg", ""))
    return f"{message}: {reason}" if error.get("type") == "json_invalid" and reason else message


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own HTTP errors, said in the one shape, with the fix."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == BODY_PARSE_FAILED and exc.__cause__ is not None:
        return _unparsable_body(exc.__cause__)
    if exc.status_code == 405:
        return _method_not_allowed(request)
    if exc.status_code == 404 and exc.detail == "Not Found":
        return answer(404, f"no endpoint at {request.url.path}: the API's endpoints are at /docs")
    return answer(exc.status_code, str(exc.detail), exc.headers)


def _unparsable_body(cause: BaseException) -> Response:
    if isinstance(cause, RecursionError):
        problem = "it is nested too deeply to parse"
    elif isinstance(cause, UnicodeDecodeError):
        problem = "it is not UTF-8 text"
    else:
        problem = f"{type(cause).__name__}: {cause}"
    detail = f"the request body is not usable JSON: {problem}"
    body = ErrorBody(detail=detail, errors=[FieldError(loc=["body"], msg=problem, type="json")])
    return StackJSONResponse(body.model_dump(), status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path, found by asking each route about each
    method (Starlette's 405 names only the first route's methods, so ``/dead-letters/{id}``
    claimed to allow GET alone, not DELETE; FastAPI's included routers hide their routes)."""
    allowed = {"OPTIONS"}
    for method in PROBED_METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes):
            allowed.add(method)
    return sorted(allowed)


def _method_not_allowed(request: Request) -> Response:
    """OPTIONS answers 204 with ``Allow``; any other method a path lacks, 405 with it."""
    allow = ", ".join(allowed_methods(request))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    detail = f"{request.method} is not allowed on {request.url.path}: use {allow}"
    return answer(405, detail, {"Allow": allow})


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug: the one shape still, never the traceback (Starlette re-raises the exception
    after this answer, so the server logs it)."""
    return answer(500, "internal error: the API's log has the traceback; please report it")


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(StackError, _stack_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(Exception, _internal_error)
    for error in REDIS_ERRORS:
        if issubclass(error, Exception):  # all of them; Starlette takes Exception classes only
            api.add_exception_handler(error, _redis_error)


def operation_statuses(method: str, operation: dict[str, Any]) -> dict[str, str]:
    """Every error status one OpenAPI operation can answer: status -> description."""
    statuses = {
        "413": "request body larger than STACK_MAX_BODY_BYTES",
        "500": "internal error (a bug; the API's log has the traceback)",
    }
    if method.upper() in STATE_CHANGING_METHODS:
        statuses["401"] = "missing or wrong X-API-Key (when STACK_API_KEY is set)"
    queries = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
    if "requestBody" in operation or queries or "422" in operation.get("responses", {}):
        statuses["422"] = "invalid request; `errors` lists each invalid value"
    return statuses


def document_errors(schema: dict[str, Any]) -> None:
    """Make the OpenAPI ``schema`` list every error status of every operation, each answered
    with ErrorBody (FastAPI's own 422 entry, HTTPValidationError, is replaced); a status
    a route documents with a model of its own (``/ready``'s 503) keeps it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components[ErrorBody.__name__] = error_schema
    error_content = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}}
    }
    fastapis_own = "#/components/schemas/HTTPValidationError"
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status, description in operation_statuses(method, operation).items():
                entry = responses.setdefault(status, {"description": description})
                if entry.get("description") == "Validation Error":  # FastAPI's own 422
                    entry["description"] = description
            for status, entry in responses.items():
                ref = entry.get("content", {}).get("application/json", {}).get("schema", {})
                if status[0] in "45" and ref.get("$ref", fastapis_own) == fastapis_own:
                    entry["content"] = error_content
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
