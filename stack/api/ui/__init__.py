"""The dashboard at ``/ui``: server-rendered pages and a small hand-written script, shipped in
the package (no build step, nothing fetched from the network)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from stack.api.security import UI_PREFIX, UISessions
from stack.api.ui.data import Throughput
from stack.api.ui.routes import HERE, router
from stack.settings import Settings


def install_ui(api: FastAPI, settings: Settings) -> None:
    """Mount the dashboard: its routes, its static files, its session signer."""
    key = settings.api_key.get_secret_value() if settings.api_key else None
    api.state.ui_sessions = UISessions(key or None)
    api.state.ui_throughput = Throughput()
    api.include_router(router)
    api.mount(f"{UI_PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
