"""``GET /health`` (the process answers) and ``GET /ready`` (Redis answers, a worker consumes)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from stack.api.dependencies import CeleryDep
from stack.checks.readiness import check_readiness

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers (says nothing about Redis or workers)."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Redis or workers missing"}})
def ready(app: CeleryDep) -> JSONResponse:
    """Readiness: Redis answers PING and at least one worker answers ping."""
    readiness = check_readiness(app)
    return JSONResponse(readiness.as_dict(), status_code=200 if readiness.ready else 503)
