"""``GET /metrics``: the Prometheus exposition of the whole stack (no API key: scrapers read)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from stack.api.dependencies import CeleryDep
from stack.metrics.exporter import exposition

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=PlainTextResponse)
def get_metrics(app: CeleryDep) -> Response:
    """Prometheus metrics of the whole stack (any API process answers the same numbers)."""
    return Response(exposition(app), media_type=CONTENT_TYPE_LATEST)
