"""What a user's Celery app needs from a stack, read from the app object itself.

Pure functions over a Celery app (no Redis, no environment): the queues a worker
of the app must consume, whether it has periodic tasks (so beat must run), its
tasks and which of them a smoke test can call without arguments, and the queues
nobody consumes. ``celery-stack init`` writes its files from them; ``up``,
``status`` and ``doctor`` can compare them with what workers consume.

Read the app as a worker sees it: call :func:`prepare` first (it imports the
app's task modules and finalizes it, as ``celery worker`` does), then ask.

What cannot be read: a router *function* in ``task_routes`` (a callable or a
dotted path) decides at publish time, so its queues are unknown, and a route
or task that names only an exchange or routing key names no queue; both are
reported in :attr:`AppQueues.notes`, never guessed. A schedule kept outside
``beat_schedule`` (a database scheduler) is unknown too: see :func:`periodic`.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from stack.app_finder import DiscoveryError, find_app, import_app_ref

__all__ = [
    "AppQueues",
    "DiscoveryError",
    "Periodic",
    "TaskInfo",
    "app_queues",
    "callable_without_arguments",
    "find_app",
    "import_app_ref",
    "periodic",
    "prepare",
    "unconsumed",
    "user_tasks",
    "worker_queues",
]

CELERY_DEFAULT_QUEUE = "celery"  # Celery's own task_default_queue
DEFAULT_SCHEDULERS = ("celery.beat:PersistentScheduler", "stack.beat:LockedScheduler")
KIT_TASK_PREFIXES = ("celery.", "diagnostics.")  # Celery's built-ins and the stack's own


@dataclass(frozen=True)
class AppQueues:
    """The queues tasks of an app can land on, each with where it is named."""

    names: tuple[str, ...]  # what a worker must consume (-Q), default queue first
    sources: Mapping[str, tuple[str, ...]]  # queue -> where the app names it
    declared: tuple[str, ...] | None  # task_queues, when set
    notes: tuple[str, ...] = ()  # what could not be read, and why

    @property
    def undeclared(self) -> tuple[str, ...]:
        """Queues named by routes or tasks but missing from task_queues (when it is set)."""
        if self.declared is None:
            return ()
        return tuple(q for q in self.names if q not in self.declared)


@dataclass
class _Collector:
    order: list[str] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, queue: Any, source: str) -> None:
        name = queue_name(queue)
        if name is None:
            self.notes.append(f"{source}: names no queue ({queue!r}), skipped")
            return
        if name not in self.sources:
            self.order.append(name)
            self.sources[name] = []
        self.sources[name].append(source)


def queue_name(queue: Any) -> str | None:
    """A queue's name from a str or a kombu Queue; None for anything else."""
    if isinstance(queue, str):
        return queue or None
    name = getattr(queue, "name", None)
    return name if isinstance(name, str) and name else None


def app_queues(app: Celery) -> AppQueues:
    """Every queue a task of ``app`` can be sent to, so every queue its worker must consume.

    The default queue (``task_default_queue``, Celery's ``celery``), the declared
    ``task_queues``, every queue ``task_routes`` names (a dict, a list or tuple of
    dicts or of ``(pattern, route)`` pairs; exact names, globs and regexes; a
    route given as ``{"queue": ...}`` or as a queue name), each task's own
    ``queue=`` option, and the queues ``beat_schedule`` entries send to. When
    ``task_queues`` is set, queues routed outside it are kept (and listed by
    :attr:`AppQueues.undeclared`): with ``task_create_missing_queues`` the
    tasks land there, and a worker consuming only ``task_queues`` misses them.
    """
    conf = app.conf
    found = _Collector()
    found.add(conf.task_default_queue or CELERY_DEFAULT_QUEUE, "task_default_queue")
    declared = _declared_queues(conf.task_queues)
    for name in declared or ():
        found.add(name, "task_queues")
    _routes(conf.task_routes, found)
    for task in sorted(app.tasks.values(), key=lambda t: str(t.name)):
        own = getattr(task, "queue", None)
        if own is not None:
            found.add(own, f"task {task.name} (queue=)")
    for entry, spec in (conf.beat_schedule or {}).items():
        options = (spec.get("options") or {}) if isinstance(spec, Mapping) else {}
        if options.get("queue") is not None:
            found.add(options["queue"], f"beat_schedule[{entry!r}] options")
    sources = {name: tuple(where) for name, where in found.sources.items()}
    return AppQueues(tuple(found.order), sources, declared, tuple(found.notes))


def worker_queues(app: Celery) -> list[str]:
    """The ``-Q`` list of a worker that consumes everything ``app`` sends."""
    return list(app_queues(app).names)


def _declared_queues(task_queues: Any) -> tuple[str, ...] | None:
    if not task_queues:
        return None
    items = task_queues.keys() if isinstance(task_queues, Mapping) else task_queues
    return tuple(n for n in (queue_name(q) for q in items) if n is not None)


def _routes(task_routes: Any, found: _Collector) -> None:
    """Walk ``task_routes`` the way celery.app.routes.prepare reads it."""
    if task_routes is None:
        return
    routers = task_routes if isinstance(task_routes, list | tuple) else (task_routes,)
    for index, router in enumerate(routers):
        where = f"task_routes[{index}]" if routers is task_routes else "task_routes"
        if isinstance(router, Mapping):
            pairs: Iterable[Any] = router.items()
        elif isinstance(router, list | tuple):
            pairs = router
        else:
            found.notes.append(
                f"{where}: router {_describe(router)} decides at publish time and cannot be "
                "read: add the queues it returns to the worker's -Q yourself"
            )
            continue
        for pair in pairs:
            if isinstance(pair, tuple | list) and len(pair) == 2:
                _route(f"{where} {_pattern(pair[0])}", pair[1], found)
            else:
                found.notes.append(f"{where}: {pair!r} is not a (pattern, route) pair, skipped")


def _route(source: str, route: Any, found: _Collector) -> None:
    if isinstance(route, Mapping):
        if route.get("queue") is None:
            found.notes.append(f"{source}: route {dict(route)!r} names no queue, skipped")
            return
        found.add(route["queue"], source)
    else:
        found.add(route, source)


def _pattern(pattern: Any) -> str:
    regex = getattr(pattern, "pattern", None)
    return f"re {regex!r}" if isinstance(regex, str) else repr(str(pattern))


def _describe(router: Any) -> str:
    if isinstance(router, str):
        return repr(router)
    return getattr(router, "__qualname__", None) or type(router).__qualname__


def unconsumed(app_queue_names: Iterable[str], consumed: Iterable[str]) -> list[str]:
    """The app's queues no worker consumes, in the app's order: tasks sent there wait forever."""
    taken = set(consumed)
    seen: set[str] = set()
    missing = []
    for name in app_queue_names:
        if name not in taken and name not in seen:
            missing.append(name)
        seen.add(name)
    return missing


# ---------------------------------------------------------------- periodic tasks


@dataclass(frozen=True)
class Periodic:
    """The app's periodic tasks as beat would see them."""

    entries: Mapping[str, str]  # beat_schedule entry -> task name
    scheduler: str | None  # a beat_scheduler other than Celery's file scheduler or ours
    late_handlers: tuple[str, ...] = ()  # on_after_configure handlers Celery never called

    @property
    def needs_beat(self) -> bool:
        """Entries to send, or a scheduler whose schedule lives elsewhere (a database)."""
        return bool(self.entries) or self.scheduler is not None

    @property
    def notes(self) -> tuple[str, ...]:
        notes = []
        if self.scheduler is not None:
            notes.append(
                f"beat_scheduler {self.scheduler!r} keeps its own schedule: beat is included "
                "without reading it"
            )
        notes.extend(
            f"{name} was connected to on_after_configure after the configuration had loaded: "
            "Celery never calls it, so its add_periodic_task adds nothing (connect it in the "
            "module that creates the app, or to on_after_finalize)"
            for name in self.late_handlers
        )
        return tuple(notes)


def periodic(app: Celery, late_handlers: Iterable[str] = ()) -> Periodic:
    """The app's ``beat_schedule``: static entries and those added by ``add_periodic_task``.

    ``add_periodic_task`` called in an ``on_after_configure`` handler lands in
    ``app.conf.beat_schedule`` when the configuration loads (Celery sends the
    signal at the end of its first load), and one called in ``on_after_finalize``
    when the app is finalized: after :func:`prepare`, both are there.
    """
    conf = app.conf
    entries = {
        str(name): str(spec.get("task", "?")) if isinstance(spec, Mapping) else "?"
        for name, spec in (conf.beat_schedule or {}).items()
    }
    scheduler = conf.beat_scheduler
    custom = str(scheduler) if scheduler and str(scheduler) not in DEFAULT_SCHEDULERS else None
    return Periodic(entries, custom, tuple(late_handlers))


def prepare(app: Celery) -> tuple[str, ...]:
    """Import the app's task modules and finalize it, as a worker does.

    Returns the ``on_after_configure`` handlers connected while the task modules
    were imported: the configuration had loaded already, so Celery never calls
    them (the trap of celery #3589; the real beat misses them as well).
    """
    signal = app.on_after_configure
    _ = app.conf.beat_schedule  # loads the configuration: on_after_configure fires now
    before = {key for key, _ in signal.receivers}
    app.loader.import_default_modules()
    app.finalize(auto=True)
    return tuple(_receiver_name(ref) for key, ref in signal.receivers if key not in before)


def prepare_app(ref: str, app: Celery) -> tuple[str, ...]:
    """:func:`prepare`, with whatever the user's task modules raise on import turned into
    one DiscoveryError naming the app (``up --app`` and ``init`` both load apps so)."""
    try:
        return prepare(app)
    except Exception as exc:  # the user's task modules may raise anything on import
        raise DiscoveryError(
            f"{ref}: importing its task modules failed: {type(exc).__name__}: {exc}"
        ) from None


def _receiver_name(ref: Any) -> str:
    receiver = ref() if isinstance(ref, weakref.ReferenceType) else ref
    module = getattr(receiver, "__module__", None) or "?"
    return f"{module}.{getattr(receiver, '__qualname__', repr(receiver))}"


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskInfo:
    """One of the app's own tasks, as a generated test or load profile needs it."""

    name: str
    required: tuple[str, ...] | None  # required parameters; None: no readable signature
    queue: str | None  # the task's own queue= option
    ignore_result: bool
    periodic: bool

    @property
    def callable_without_arguments(self) -> bool:
        return self.required == ()


def user_tasks(app: Celery) -> list[TaskInfo]:
    """The app's own tasks (not Celery's built-ins nor the stack's diagnostics), by name."""
    scheduled = set(periodic(app).entries.values())
    infos = []
    for name, task in sorted(app.tasks.items()):
        if name.startswith(KIT_TASK_PREFIXES) or _is_stacks(task):
            continue
        infos.append(
            TaskInfo(
                name=name,
                required=required_parameters(task),
                queue=queue_name(getattr(task, "queue", None)),
                ignore_result=bool(getattr(task, "ignore_result", False)),
                periodic=name in scheduled,
            )
        )
    return infos


def _is_stacks(task: Any) -> bool:
    """A task defined by celery-stack itself: a shared task of ours joins every app built after
    its module was imported (the reference tasks, in a process that loaded the reference app)."""
    run = getattr(task, "run", None)
    return str(getattr(run, "__module__", "") or "").startswith("stack.")


def required_parameters(task: Any) -> tuple[str, ...] | None:
    """Parameters of the task's ``run`` without a default (``self`` of a bound task excluded)."""
    try:
        signature = inspect.signature(task.run)
    except (TypeError, ValueError):
        return None
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return tuple(
        p.name
        for p in signature.parameters.values()
        if p.kind in kinds and p.default is inspect.Parameter.empty
    )


def callable_without_arguments(tasks: Iterable[TaskInfo]) -> TaskInfo | None:
    """The task a smoke test can run as is: no required argument, a result to wait for.

    Tasks beat does not schedule come first (a periodic task is often maintenance
    with side effects), then by name.
    """
    fits = [t for t in tasks if t.callable_without_arguments and not t.ignore_result]
    fits.sort(key=lambda t: (t.periodic, t.name))
    return fits[0] if fits else None
