"""``GET /queues``: waiting messages per queue (all priority lists), unacked, dead letters."""

from __future__ import annotations

from fastapi import APIRouter

from stack.api.dependencies import CeleryDep
from stack.api.errors import REDIS_DOWN
from stack.checks.overview import QueueOverview, queue_overview

router = APIRouter(tags=["reliability"])


@router.get("/queues", responses=REDIS_DOWN)
def get_queues(app: CeleryDep) -> QueueOverview:
    """Waiting messages per queue (all priority lists), unacked messages, dead letters."""
    return queue_overview(app)
