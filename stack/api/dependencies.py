"""How every router reaches the shared objects: the Celery app on ``app.state`` and its context.

``create_app`` puts the Celery app on ``app.state.celery`` once; everything
else (settings, Redis, the dead-letter store) is read from its StackContext.
"""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from stack.context import StackContext, context_of
from stack.deadletter import DeadLetterStore


def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


def get_context(request: Request) -> StackContext:
    return context_of(get_celery(request))


def get_dead_letters(request: Request) -> DeadLetterStore:
    return get_context(request).dead_letters


CeleryDep = Annotated[Celery, Depends(get_celery)]
ContextDep = Annotated[StackContext, Depends(get_context)]
StoreDep = Annotated[DeadLetterStore, Depends(get_dead_letters)]
