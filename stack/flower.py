"""Flower, with its ``/metrics`` behind the basic auth that guards its pages.

Flower serves ``/metrics`` (and ``/healthcheck``) without authentication by design,
but its metrics name every task, queue and worker. The production profile starts
Flower through here: ``python -m stack.flower -A stack.celery_app flower ...``
takes Celery's own command line, guards ``/metrics`` with Flower's own
``current_user`` check (401 without the credentials of ``--basic-auth`` /
``FLOWER_BASIC_AUTH``), and leaves ``/healthcheck`` open for probes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

GUARDED = "_stack_guarded"


def guard_metrics() -> None:
    """Make Flower's metrics handler require its authenticated user (idempotent)."""
    import tornado.web
    from flower.views.monitor import Metrics

    if getattr(Metrics.get, GUARDED, False):
        return
    guarded = tornado.web.authenticated(Metrics.get)
    setattr(guarded, GUARDED, True)
    Metrics.get = guarded


def main(argv: Sequence[str] | None = None) -> int:
    """``celery ARGS...`` with Flower's metrics guarded first."""
    from celery.bin.celery import main as celery_main

    guard_metrics()
    sys.argv = ["celery", *(sys.argv[1:] if argv is None else argv)]
    return int(celery_main() or 0)


if __name__ == "__main__":
    raise SystemExit(main())
