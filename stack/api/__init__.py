"""The HTTP API: ``create_app`` builds it (``uvicorn --factory stack.api:create_app``)."""

from stack.api.app import create_app

__all__ = ["create_app"]
