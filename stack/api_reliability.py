"""API routes of the reliability kit: queue depths and the dead letters.

Included by ``stack.api.create_app``; they read the shared Celery app from
``app.state`` like every router, and the same DeadLetterStore as the worker and the CLI.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from celery import Celery
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from stack.deadletter import DeadLetter, DeadLetterStore
from stack.overview import QueueOverview, queue_overview
from stack.task import dead_letters_of

MAX_PAGE_SIZE = 1000  # one page stays a few MB at most (records carry tracebacks)
REDIS_DOWN: dict[int | str, dict[str, Any]] = {503: {"description": "Redis down"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown dead-letter id"},
    **REDIS_DOWN,
}

router = APIRouter(tags=["reliability"])


def _celery(request: Request) -> Celery:
    return cast(Celery, request.app.state.celery)


def _store(request: Request) -> DeadLetterStore:
    return dead_letters_of(_celery(request))


CeleryDep = Annotated[Celery, Depends(_celery)]
StoreDep = Annotated[DeadLetterStore, Depends(_store)]


class DeadLetterPage(BaseModel):
    """One page of dead letters, newest first."""

    total: int
    offset: int
    limit: int
    items: list[DeadLetter]


class ReplayAccepted(BaseModel):
    """A replayed dead letter: the new task id and where to poll it."""

    record_id: str
    task_id: str
    status_url: str


@router.get("/queues", responses=REDIS_DOWN)
def get_queues(app: CeleryDep) -> QueueOverview:
    """Waiting messages per queue (all priority lists), unacked messages, dead letters."""
    return queue_overview(app)


@router.get("/dead-letters", responses=REDIS_DOWN)
def list_dead_letters(
    store: StoreDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> DeadLetterPage:
    """Dead letters, newest first."""
    return DeadLetterPage(
        total=store.count(), offset=offset, limit=limit, items=store.page(offset, limit)
    )


@router.get("/dead-letters/{record_id}", responses=NOT_FOUND)
def get_dead_letter(record_id: str, store: StoreDep) -> DeadLetter:
    return store.get(record_id)


@router.post("/dead-letters/{record_id}/replay", status_code=202, responses=NOT_FOUND)
def replay_dead_letter(record_id: str, store: StoreDep, app: CeleryDep) -> ReplayAccepted:
    """Publish the task again to its original queue and priority, under a new task id."""
    task_id = store.replay(record_id, app)
    return ReplayAccepted(
        record_id=record_id, task_id=task_id, status_url=f"/task-status/{task_id}"
    )


@router.delete("/dead-letters/{record_id}", status_code=204, responses=NOT_FOUND)
def delete_dead_letter(record_id: str, store: StoreDep) -> Response:
    store.delete(record_id)
    return Response(status_code=204)
