"""``celery-stack init``: the files that put an existing Celery project on the stack.

:func:`init_project` finds the project's Celery app (or takes ``--app``),
reads what it needs (:mod:`stack.discovery`), and writes each file that does
not exist yet: a Procfile, ``.env.example``, the pytest plugin's settings, a
smoke test, a load profile and a GitHub Actions workflow. It never overwrites:
an existing file is kept and named. The texts come from :mod:`stack.scaffold.files`.
"""

from __future__ import annotations

import configparser
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery

from stack.app_finder import import_roots, on_sys_path
from stack.discovery import (
    DiscoveryError,
    app_queues,
    find_app,
    import_app_ref,
    periodic,
    prepare_app,
    user_tasks,
)
from stack.errors import StackError
from stack.scaffold import files
from stack.scaffold.files import LOAD_PROFILE, SMOKE_TEST, WORKFLOW, Found

PYTEST_INI = "pytest.ini"
CONFTEST = "conftest.py"
INI_OPTION = "stack_celery_app"


@dataclass
class Outcome:
    """What ``init`` did: the app, the files written and kept, and what to do by hand."""

    found: Found
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "app": self.found.ref,
            "queues": list(self.found.queues.names),
            "beat": self.found.periodic.needs_beat,
            "periodic_tasks": dict(self.found.periodic.entries),
            "smoke_task": self.found.smoke_task.name if self.found.smoke_task else None,
            "written": self.written,
            "kept": self.kept,
            "notes": self.notes,
        }


def init_project(root: Path, app_ref: str | None = None) -> Outcome:
    """Find (or import) the app under ``root`` and write the files it lacks."""
    root = root.resolve()
    if not root.is_dir():
        raise DiscoveryError(f"--dir {str(root)!r} is not a directory: pass the project root")
    with on_sys_path(import_roots(root)):  # the app's task modules import from there too
        ref, app = import_app_ref(app_ref or find_app(root))
        found = discover(ref, app)
    planned, notes = plan(root, found)
    outcome = Outcome(found, notes=notes)
    for name, text in planned.items():
        try:
            written = write_new(root / name, text)
        except OSError as exc:
            raise StackError(f"cannot write {name} in {root}: {exc.strerror or exc}") from None
        (outcome.written if written else outcome.kept).append(name)
    return outcome


def discover(ref: str, app: Celery) -> Found:
    """Everything the files need, read from the app as a worker would load it."""
    late = prepare_app(ref, app)
    return Found(ref, app_queues(app), periodic(app, late), tuple(user_tasks(app)))


def plan(root: Path, found: Found) -> tuple[dict[str, str], list[str]]:
    """Each file's path (relative to ``root``) and text, and the notes for the user."""
    src_layout = len(import_roots(root)) > 1
    planned = {
        "Procfile": files.procfile(found),
        ".env.example": files.env_example(found),
    }
    notes = list(found.queues.notes) + list(found.periodic.notes)
    if found.queues.undeclared:
        notes.append(
            f"queues {', '.join(found.queues.undeclared)} are routed to but not in task_queues: "
            "the worker consumes them anyway (-Q)"
        )
    config = pytest_config(root)
    if config is None or config == PYTEST_INI:
        planned[PYTEST_INI] = files.pytest_ini(found, src_layout)
        if config == PYTEST_INI and not _mentions_option(root / PYTEST_INI):
            notes.append(f"add `{INI_OPTION} = {found.ref}` to the [pytest] section of pytest.ini")
    elif not _mentions_option(root / config):
        planned[CONFTEST] = files.conftest(found, src_layout)
        if (root / CONFTEST).exists():
            notes.append(
                f"pytest is configured in {config}: add `{INI_OPTION} = {found.ref}` to its "
                "pytest section (conftest.py exists, so it is left alone)"
            )
    planned[SMOKE_TEST] = files.smoke_test(found)
    planned[LOAD_PROFILE] = files.load_profile(found)
    planned[WORKFLOW] = files.workflow(found, install_commands(root))
    return planned, notes


def pytest_config(root: Path) -> str | None:
    """The file pytest reads its settings from under ``root`` (pytest's order), if any."""
    for name in (PYTEST_INI, ".pytest.ini"):
        if (root / name).is_file():
            return PYTEST_INI if name == PYTEST_INI else name
    pyproject = _toml(root / "pyproject.toml")
    pytest_table = pyproject.get("tool", {}).get("pytest", {})
    if pytest_table:  # [tool.pytest.ini_options], or pytest 9's [tool.pytest]
        return "pyproject.toml"
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(root / name, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_section(section):
            return name
    return None


def install_commands(root: Path) -> list[str]:
    """How CI installs the project: its requirements, then the project itself if installable."""
    commands = []
    if (root / "requirements.txt").is_file():
        commands.append("python -m pip install -r requirements.txt")
    pyproject = _toml(root / "pyproject.toml")
    if (root / "setup.py").is_file() or {"project", "build-system"} & pyproject.keys():
        commands.append("python -m pip install -e .")
    if not commands:
        commands.append("# no requirements.txt or installable project found: install yours here")
    return commands


def _toml(path: Path) -> dict[str, dict[str, object]]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _mentions_option(path: Path) -> bool:
    try:
        return INI_OPTION in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def write_new(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless something exists there; True when written."""
    if path.exists() or path.is_symlink():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        return False
    return True


__all__ = ["Outcome", "discover", "init_project", "plan", "write_new"]
