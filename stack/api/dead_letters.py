"""``/dead-letters``: list, show, replay and delete the records the workers wrote.

The same DeadLetterStore as the worker and the CLI, through the app's context;
a replay goes through :func:`stack.submit.replay_record`, exactly once, like the CLI's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from stack.api.dependencies import CeleryDep, StoreDep
from stack.api.errors import NOT_FOUND, REDIS_DOWN
from stack.deadletter import DeadLetter
from stack.submit import replay_record

MAX_PAGE_SIZE = 1000  # one page stays a few MB at most (records carry tracebacks)

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


@router.post(
    "/dead-letters/{record_id}/replay",
    status_code=202,
    responses={**NOT_FOUND, 409: {"description": "another replay of it is stuck publishing"}},
)
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
