"""`up --reload`: watch the project's Python files and restart what runs them.

Celery has no autoreload of its own (celery #1658), so the launcher does it:
a watchfiles thread sees a burst of saves as one change set (watchfiles
groups changes until ``QUIET_MS`` pass without one) and posts one restart of
the services that run the project's code. The launcher executes it on its own
loop, warmly; a service whose new code does not import is marked failed there
while the others keep running, and the next good save restarts it again.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from stack.errors import SettingsError
from stack.launcher.scaling import group_of
from stack.launcher.services import REDIS, Service

PATHS_VARIABLE = "STACK_RELOAD_PATHS"
IGNORE_VARIABLE = "STACK_RELOAD_IGNORE"
# Never the project's own code: virtualenvs, caches, version control.
DEFAULT_IGNORE = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    "site-packages",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    "node_modules",
)
WATCHED_SUFFIXES = (".py",)
QUIET_MS = 150  # a burst of saves ends when none came for this long: one restart
MAX_BURST_MS = 1500  # ... or after this long, however busy the editor
NOT_RELOADED = frozenset({REDIS, "flower"})  # they run none of the project's code


@dataclass(frozen=True)
class ReloadConfig:
    """What to watch: absolute directories, and name patterns never to look at."""

    paths: tuple[Path, ...]
    ignore: tuple[str, ...]
    data_dir: Path

    def watches(self, path: str | Path) -> bool:
        """A Python file under a watched path, outside the data dir, no part of it ignored."""
        p = Path(path).absolute()
        if p.suffix not in WATCHED_SUFFIXES or p.is_relative_to(self.data_dir):
            return False
        base = next((root for root in self.paths if p.is_relative_to(root)), None)
        if base is None:
            return False
        relative = p.relative_to(base)
        if any(fnmatch.fnmatch(str(relative), pattern) for pattern in self.ignore):
            return False
        return not any(
            fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in self.ignore
        )


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.replace(os.pathsep, ",").split(",") if item.strip()]


def reload_config(
    environ: Mapping[str, str],
    root: Path,
    data_dir: Path,
    paths: Sequence[str] = (),
    ignore: Sequence[str] = (),
) -> ReloadConfig:
    """The watch list: ``--reload-path`` or STACK_RELOAD_PATHS (default: the project root),
    ignoring DEFAULT_IGNORE plus ``--reload-ignore`` / STACK_RELOAD_IGNORE patterns."""
    given = list(paths) or _split(environ.get(PATHS_VARIABLE, ""))
    source = "--reload-path" if paths else PATHS_VARIABLE
    chosen: list[Path] = []
    for item in given or ["."]:
        path = (root / item).absolute()
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            raise SettingsError(
                f"{source} names {item!r}, which {what} ({path}): name directories of your "
                "project, separated by commas"
            )
        chosen.append(path)
    patterns = list(ignore) or _split(environ.get(IGNORE_VARIABLE, ""))
    for pattern in patterns:
        if pattern.startswith("/"):
            raise SettingsError(
                f"{IGNORE_VARIABLE} pattern {pattern!r} is absolute: patterns match names "
                "or paths relative to a watched directory (e.g. 'migrations' or 'docs/*')"
            )
    extra = tuple(p.rstrip("/") for p in patterns)
    return ReloadConfig(tuple(chosen), DEFAULT_IGNORE + extra, data_dir.absolute())


def reloaded(services: Iterable[Service], once: Iterable[str] = ()) -> tuple[str, ...]:
    """The services a code change restarts: every one we run but Redis, Flower, one-shots.

    A scaled line's copies (``worker.1``, ...) are named by their group, so a copy added at
    run time (`celery-stack scale`) restarts too."""
    skip = NOT_RELOADED | set(once)
    names = (group_of(s.name) for s in services if not s.external and s.name not in skip)
    return tuple(dict.fromkeys(names))


def restart_for(
    changed: Iterable[str | Path], config: ReloadConfig, names: Sequence[str]
) -> tuple[str, ...]:
    """The names to restart for one change set: all of ``names`` when a watched file
    changed (a task module is imported by the worker, beat and the API alike), else none."""
    return tuple(names) if any(config.watches(p) for p in changed) else ()


class Watcher:
    """A daemon thread turning each burst of saves into one ``restart(names)``."""

    def __init__(
        self,
        config: ReloadConfig,
        names: Sequence[str],
        restart: Callable[[tuple[str, ...]], None],
        say: Callable[[str], None],
    ) -> None:
        self.config, self.names, self.restart, self.say = config, tuple(names), restart, say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="up-reload", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def _watch(self) -> None:
        """A watch that cannot go on (inotify's limit reached, a path removed) is a log line:
        the stack runs on without reload."""
        try:
            self._follow()
        except (OSError, RuntimeError) as exc:
            self.say(
                f"reload: cannot watch {', '.join(map(str, self.config.paths))} ({exc}); "
                "reload is off (narrow STACK_RELOAD_PATHS, or raise "
                "fs.inotify.max_user_watches)"
            )

    def _follow(self) -> None:
        changes = watchfiles.watch(
            *self.config.paths,
            watch_filter=lambda _change, path: self.config.watches(path),
            debounce=MAX_BURST_MS,
            step=QUIET_MS,
            stop_event=self._stop,
            raise_interrupt=False,
            rust_timeout=500,
        )
        for batch in changes:
            files = sorted({path for _change, path in batch})
            names = restart_for(files, self.config, self.names)
            if names and not self._stop.is_set():
                root = self.config.paths[0]
                self.say(f"reload: {describe(files, root)} changed: restarting {', '.join(names)}")
                self.restart(names)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def describe(files: Sequence[str], root: Path) -> str:
    """The changed files as a developer reads them: relative to the project, a few at most."""
    shown = []
    for path in files[:3]:
        p = Path(path)
        shown.append(str(p.relative_to(root)) if p.is_relative_to(root) else str(p))
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return ", ".join(shown) + more


def reload_wanted(profile: str, flag: bool | None) -> bool:
    """On by default in dev; production runs the code it started with, so --reload is refused."""
    if profile == "production":
        if flag:
            raise SettingsError(
                "--reload is for the dev profile: production runs the code it was started "
                "with; drop --reload (or run `up --profile dev`)"
            )
        return False
    return flag is not False
