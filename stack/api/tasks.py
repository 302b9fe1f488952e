"""``POST /tasks`` and ``GET /task-status/{task_id}``: a task in, its status out."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from stack.api.dependencies import CeleryDep
from stack.arguments import MAX_ARGUMENT_DEPTH
from stack.publish import publisher_for
from stack.submit import submit
from stack.task_status import TaskStatus, task_status

router = APIRouter(tags=["tasks"])


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


@router.post(
    "/tasks",
    status_code=202,
    responses={
        404: {"description": "unknown task"},
        422: {"description": f"invalid body, or arguments nested over {MAX_ARGUMENT_DEPTH} deep"},
        503: {"description": "Redis down"},
    },
)
async def post_task(body: TaskRequest, app: CeleryDep) -> TaskAccepted:
    """Queue a task; answers once Redis has stored the message.

    The reference app publishes on the event loop in one round trip (stack.publish);
    any other app, or direct execution, goes through submit() in a thread.
    """
    publisher = publisher_for(app)
    name, args, kwargs, priority, queue = (
        body.name,
        body.args,
        body.kwargs,
        body.priority,
        body.queue,
    )
    if publisher.handles():
        task_id = await publisher.publish(name, args, kwargs, priority, queue)
    else:
        task_id = await run_in_threadpool(submit, app, name, args, kwargs, priority, queue)
    return TaskAccepted(task_id=task_id, status_url=f"/task-status/{task_id}")


@router.get("/task-status/{task_id}", responses={503: {"description": "Redis down"}})
def get_task_status(task_id: str, app: CeleryDep) -> TaskStatus:
    """The seed's status shape; an id never seen is ``pending``."""
    return task_status(app, task_id)
