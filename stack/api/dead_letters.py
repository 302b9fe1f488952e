"""``/dead-letters``: list, show, replay and delete the records the workers wrote.

The same DeadLetterStore as the worker and the CLI, through the app's context;
a replay goes through :func:`stack.submit.replay_record`, exactly once, like the CLI's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from stack.api.dependencies import CeleryDep, StoreDep
from stack.api.errors import NOT_FOUND, REDIS_DOWN, error_response
from stack.deadletter import DeadLetter
from stack.settings import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from stack.submit import replay_record

MAX_PAGE_SIZE = PAGE_LIMIT_MAX  # one page stays a few MB at most (records carry tracebacks)
# A replay republishes to the record's queue: gone from the configuration since, it is 422.
REPLAY_ERRORS = {
    **NOT_FOUND,
    409: error_response("another replay of it is stuck publishing"),
    422: error_response("the record's queue is no longer configured"),
}

router = APIRouter(tags=["reliability"])


class DeadLetterPage(BaseModel):
    """One page of dead letters, newest first."""

    total: int
    offset: int
    limit: int
    items: list[DeadLetter]


class ReplayAccepted(BaseModel):
    """A replayed dead letter: the task id of its one replay and where to poll it."""

    record_id: str
    task_id: str
    status_url: str
    created: bool = Field(description="true: this call published it; false: an earlier one did")


@router.get("/dead-letters", responses=REDIS_DOWN)
def list_dead_letters(
    store: StoreDep,
    offset: Annotated[
        int, Query(ge=0, le=PAGE_OFFSET_MAX, description="newest records to skip")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="records per page")] = 50,
) -> DeadLetterPage:
    """Dead letters, newest first; ``offset`` and ``limit`` are bounded (422 beyond), so a
    huge offset is a clear error rather than a Redis integer overflow answered as 503."""
    return DeadLetterPage(
        total=store.count(), offset=offset, limit=limit, items=store.page(offset, limit)
    )


@router.get("/dead-letters/{record_id}", responses=NOT_FOUND)
def get_dead_letter(record_id: str, store: StoreDep) -> DeadLetter:
    return store.get(record_id)


@router.post("/dead-letters/{record_id}/replay", status_code=202, responses=REPLAY_ERRORS)
def replay_dead_letter(record_id: str, app: CeleryDep) -> ReplayAccepted:
    """Publish the task again to its original queue and priority, under a new task id, once:
    asked again (or concurrently), it answers the same task id and publishes nothing."""
    replayed = replay_record(app, record_id)
    return ReplayAccepted(
        record_id=record_id,
        task_id=replayed.task_id,
        status_url=f"/task-status/{replayed.task_id}",
        created=replayed.created,
    )


@router.delete("/dead-letters/{record_id}", status_code=204, responses=NOT_FOUND)
def delete_dead_letter(record_id: str, store: StoreDep) -> Response:
    store.delete(record_id)
    return Response(status_code=204)
