"""The HTTP API's factory: ``create_app()`` (``uvicorn --factory stack.api:create_app``).

One router per noun (tasks, health, queues, dead letters, metrics), all
reading the Celery app from ``app.state.celery`` and its StackContext
(:mod:`stack.api.dependencies`). Publishing through kombu blocks, so every
endpoint that touches Redis is a plain ``def``: FastAPI runs it in its
threadpool and the event loop stays free.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from celery import Celery
from fastapi import FastAPI

from stack.api import dead_letters, health, metrics, queues, tasks
from stack.api.errors import document_errors, install_error_handlers
from stack.api.rendering import StackJSONResponse
from stack.api.security import install_security
from stack.api.ui import install_ui
from stack.app_factory import load_app
from stack.context import context_of
from stack.settings import Settings

API_TITLE = "celery-stack"


class StackAPI(FastAPI):
    """FastAPI whose OpenAPI schema lists every error status of every operation, in the one
    error shape (:func:`stack.api.errors.document_errors`)."""

    _documented: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        schema = super().openapi()
        if self._documented is not schema:  # FastAPI regenerates it when routes change
            document_errors(schema)
            self._documented = schema
        return schema


def create_app(settings: Settings | None = None, app: Celery | None = None) -> FastAPI:
    """Build the API; with no arguments, settings come from the environment (the edge).

    Given an app, its context serves Redis; ``settings`` (default: the app's) configure
    the API itself (its key, its body ceiling, which reads are private).
    """
    owns_celery = app is None
    celery = load_app(settings or Settings.load()) if app is None else app
    context = context_of(celery)
    settings = settings or context.settings

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_celery:  # a caller's app (tests) keeps its clients
            context.close()
            celery.close()

    api = StackAPI(
        title=API_TITLE,
        summary="Submit Celery tasks, read their status, probe the stack.",
        lifespan=lifespan,
        # Every answer through one writer: lone surrogates escaped, NaN as "NaN", never a 500.
        default_response_class=StackJSONResponse,
    )
    api.state.celery = celery
    install_error_handlers(api)
    for module in (tasks, health, queues, dead_letters, metrics):
        api.include_router(module.router)
    install_ui(api, settings)  # the dashboard at /ui
    install_security(api, settings)  # the API key on state changes (and private reads)
    return api
