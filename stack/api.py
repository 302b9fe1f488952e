"""The HTTP API: submit tasks, read their status, probe the stack.

``create_app()`` is the factory (``uvicorn --factory stack.api:create_app``).
The Celery app, the settings and a Redis client live on ``app.state`` and are
reached through the small dependencies below, so further routers (queues,
dead letters, metrics) plug in with ``include_router`` and share them.

Publishing through kombu blocks, so every endpoint that touches Redis is a
plain ``def``: FastAPI runs it in its threadpool and the event loop stays free.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, cast

import kombu.exceptions
import redis
from celery import Celery
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stack import api_reliability, exporter
from stack.errors import (
    BrokerUnavailable,
    DeadLetterNotFound,
    SettingsError,
    StackError,
    UnknownQueue,
    UnknownTask,
)
from stack.readiness import check_readiness
from stack.security import install_security
from stack.settings import Settings
from stack.status import TaskStatus, task_status
from stack.submit import submit
from stack.task import redis_of, settings_of

API_TITLE = "celery-stack"

# Every deliberate error maps to one status code here (most specific class wins).
# An unknown queue is 422, like any other invalid value in the body.
ERROR_STATUS: dict[type[StackError], int] = {
    UnknownTask: 404,
    DeadLetterNotFound: 404,
    UnknownQueue: 422,
    BrokerUnavailable: 503,
    SettingsError: 500,
}
DEFAULT_ERROR_STATUS = 500


class TaskRequest(BaseModel):
    """``POST /tasks`` body."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="registered task name, e.g. diagnostics.echo")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    priority: Literal["critical", "high", "normal", "low"] = "normal"
    queue: str | None = Field(None, description="logical queue; null: the task's route")


class TaskAccepted(BaseModel):
    """``POST /tasks`` answer: where to poll for the outcome."""

    task_id: str
    status_url: str


# --- dependencies: how any router reaches the shared objects --------------------


def get_celery(request: Request) -> Celery:
    return cast(Celery, request.app.state.celery)


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_redis(request: Request) -> redis.Redis[bytes]:
    return cast("redis.Redis[bytes]", request.app.state.redis)


CeleryDep = Annotated[Celery, Depends(get_celery)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated["redis.Redis[bytes]", Depends(get_redis)]


# --- errors: translated at the boundary -----------------------------------------


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
    """A raw Redis/kombu error that escaped a module: still a 503 with a message."""
    detail = f"Redis is unavailable ({type(exc).__name__}: {exc}); is it running? Check REDIS_URL"
    return JSONResponse({"detail": detail}, status_code=503)


# --- core endpoints --------------------------------------------------------------

router = APIRouter()


@router.post(
    "/tasks",
    status_code=202,
    responses={404: {"description": "unknown task"}, 503: {"description": "Redis down"}},
)
def post_task(body: TaskRequest, app: CeleryDep) -> TaskAccepted:
    """Queue a task; answers once Redis has stored the message."""
    task_id = submit(
        app, body.name, args=body.args, kwargs=body.kwargs, priority=body.priority, queue=body.queue
    )
    return TaskAccepted(task_id=task_id, status_url=f"/task-status/{task_id}")


@router.get("/task-status/{task_id}", responses={503: {"description": "Redis down"}})
def get_task_status(task_id: str, app: CeleryDep) -> TaskStatus:
    """The seed's status shape; an id never seen is ``pending``."""
    return task_status(app, task_id)


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers (says nothing about Redis or workers)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Redis or workers missing"}})
def ready(app: CeleryDep) -> JSONResponse:
    """Readiness: Redis answers PING and at least one worker answers ping."""
    readiness = check_readiness(app)
    return JSONResponse(readiness.as_dict(), status_code=200 if readiness.ready else 503)


# --- the factory -----------------------------------------------------------------


def create_app(settings: Settings | None = None, app: Celery | None = None) -> FastAPI:
    """Build the API; with no arguments, settings come from the environment (the edge)."""
    owns_celery = app is None
    if app is None:
        from stack.celery_app import load_app

        settings = settings or Settings.load()
        app = load_app(settings)
    elif settings is None:
        settings = settings_of(app)
    celery = app

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_celery:  # a caller's app (tests) keeps its clients
            api.state.redis.close()
            celery.close()

    api = FastAPI(
        title=API_TITLE,
        summary="Submit Celery tasks, read their status, probe the stack.",
        lifespan=lifespan,
    )
    api.state.settings = settings
    api.state.celery = celery
    api.state.redis = redis_of(celery)
    api.add_exception_handler(StackError, _stack_error)
    api.add_exception_handler(redis.RedisError, _redis_error)
    api.add_exception_handler(kombu.exceptions.OperationalError, _redis_error)
    api.include_router(router)
    api.include_router(exporter.router)  # GET /metrics
    api.include_router(api_reliability.router)  # GET /queues, /dead-letters...
    install_security(api, settings)  # X-API-Key on state changes, body ceiling
    return api
