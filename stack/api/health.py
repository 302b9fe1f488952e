"""``GET /health`` (the process answers) and ``GET /ready`` (Redis answers, a worker consumes)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from stack.api.dependencies import CeleryDep
from stack.api.rendering import StackJSONResponse
from stack.checks.readiness import check_readiness

router = APIRouter(tags=["health"])


class ReadinessBody(BaseModel):
    """``/ready``'s answer; when not ready (503), ``detail`` says what is missing, as in
    every other error body."""

    ready: bool
    redis: bool
    workers: list[str]
    missing: list[str]
    detail: str | None = Field(None, description="503 only: what is missing")


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers (says nothing about Redis or workers)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadinessBody,
    responses={503: {"model": ReadinessBody, "description": "Redis or workers missing"}},
)
def ready(app: CeleryDep) -> StackJSONResponse:
    """Readiness: Redis answers PING and at least one worker answers ping."""
    readiness = check_readiness(app)
    if readiness.ready:
        return StackJSONResponse(readiness.as_dict())
    detail = f"not ready: {'; '.join(readiness.missing)}"
    return StackJSONResponse({**readiness.as_dict(), "detail": detail}, status_code=503)
