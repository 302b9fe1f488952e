"""`celery-stack up --app MODULE[:ATTR]`: a user's Celery app as Procfile lines, no Procfile.

:func:`discover_app` imports the app as a worker would (its task modules, finalized)
and reads what a stack of it needs (:mod:`stack.discovery`): the queues its tasks
are sent to and whether it has periodic tasks. :func:`app_lines` turns that into
the lines a Procfile would hold: Redis, the API, a worker consuming exactly those
queues, beat when there is a schedule, Flower. Every Celery line runs
``celery -A stack.celery_app`` with ``STACK_CELERY_APP`` naming the app (the
launcher's settings carry it into each child's environment): the user's app,
rebound to the stack's Redis, with the diagnostics tasks readiness and doctor use.
The dev builders then give those lines their probes as for any Procfile.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from stack.app_factory import REFERENCE_APP, create_celery_app
from stack.app_finder import import_roots, on_sys_path
from stack.discovery import (
    AppQueues,
    Periodic,
    app_queues,
    import_app_ref,
    periodic,
    prepare_app,
)
from stack.launcher.services import REDIS
from stack.settings import Settings

STOCK_REDIS = "python -m stack redis"
REFERENCE_REFS = (REFERENCE_APP, REFERENCE_APP.partition(":")[0])
NO_APP = (
    "no Procfile in {where} and no Celery app to run: pass --app MODULE[:ATTR] (e.g. "
    "`celery-stack up --app proj.celery:app`), set STACK_CELERY_APP, or write a Procfile "
    "(`celery-stack init` writes one for your project; --procfile names another)"
)


@dataclass(frozen=True)
class DiscoveredApp:
    """A user's app as `up` needs it: where it is, what it sends to, whether beat must run."""

    ref: str  # module:attr, resolved
    queues: AppQueues
    periodic: Periodic
    roots: tuple[Path, ...]  # the project's import roots (its src/ too, in a src layout)

    @property
    def notes(self) -> tuple[str, ...]:
        """What discovery could not read (a router function, a database scheduler)."""
        return self.queues.notes + self.periodic.notes


def discover_app(ref: str, settings: Settings, root: Path | None = None) -> DiscoveredApp:
    """Import ``ref`` from the project at ``root`` (default: the working directory) and read it.

    Raises DiscoveryError (a StackError: the CLI prints it, no traceback) when the app
    cannot be imported or its task modules fail.
    """
    roots = tuple(import_roots((root or Path.cwd()).resolve()))
    if ref.strip() in REFERENCE_REFS:
        app = create_celery_app(settings)
        try:
            return DiscoveredApp(REFERENCE_APP, app_queues(app), periodic(app), roots)
        finally:
            app.close()
    # What the user's modules print on import goes to stderr: `up --json`'s stdout is the table.
    with on_sys_path(roots), contextlib.redirect_stdout(sys.stderr):
        resolved, app = import_app_ref(ref, roots)
        late = prepare_app(resolved, app)
    return DiscoveredApp(resolved, app_queues(app), periodic(app, late), roots)


def app_settings(settings: Settings, found: DiscoveredApp) -> Settings:
    """The launcher's settings for the app: every child loads it (STACK_CELERY_APP) and the
    worker consumes its queues (STACK_WORKER_QUEUES, unless set by hand)."""
    update: dict[str, object] = {"celery_app": found.ref}
    if settings.worker_queues is None:
        update["worker_queues"] = found.queues.names
    return settings.model_copy(update=update)


def app_lines(settings: Settings, found: DiscoveredApp) -> dict[str, str]:
    """The Procfile a stack of ``found`` would have, name -> command, in start order."""
    prefix = _pythonpath(found)
    celery = f"{prefix}celery -A stack.celery_app"
    queues = shlex.quote(",".join(settings.worker_queues or found.queues.names))
    events = " -E" if settings.task_events else ""  # Flower's task pages (the reference app's
    # worker_send_task_events; a user's app may not set it)
    lines = {
        REDIS: STOCK_REDIS,
        "api": f"{prefix}uvicorn --factory stack.api:create_app "
        "--host ${API_HOST:-127.0.0.1} --port ${API_PORT:-8001}",
        "worker": f"{celery} worker --hostname ${{STACK_WORKER_HOSTNAME:-worker@%h}} "
        f"-Q {queues}{events} --loglevel INFO --without-mingle --without-gossip",
    }
    if found.periodic.needs_beat:
        lines["beat"] = (
            f"mkdir -p ${{STACK_DATA_DIR:-.stack}} && {celery} beat "
            "--schedule ${STACK_DATA_DIR:-.stack}/celerybeat-schedule --loglevel INFO"
        )
    lines["flower"] = f"{celery} flower --address=127.0.0.1 --port=${{FLOWER_PORT:-5555}}"
    return lines


def _pythonpath(found: DiscoveredApp) -> str:
    """A src layout's modules import from src/: Celery and uvicorn add only the cwd."""
    extra = [str(root) for root in found.roots[1:]]
    if not extra:
        return ""
    return f"PYTHONPATH={shlex.quote(':'.join(extra))}${{PYTHONPATH:+:$PYTHONPATH}} "


def with_redis(lines: dict[str, str]) -> dict[str, str]:
    """A user's Procfile without a ``redis`` line still gets the stack's Redis, first."""
    if REDIS in lines:
        return lines
    return {REDIS: STOCK_REDIS, **lines}


def no_app_error(where: Path) -> str:
    return NO_APP.format(where=str(where.resolve()))
