"""Find a project's Celery app without being told: ``module:attr`` from its source tree.

:func:`find_app` reads every Python module of the project (not its tests, docs,
virtualenvs or hidden directories) for a top-level ``name = Celery(...)``
(``from celery import Celery``, an alias of it, or ``celery.Celery``), imports
each such module with the project root on ``sys.path`` and keeps the names that
really are Celery apps. One app: its ``module:attr``. None, several, or one that
does not import: a :class:`DiscoveryError` saying so, and to pass ``--app``.

:func:`import_app_ref` imports ``MODULE[:ATTR]`` as ``celery -A`` does: without
an attribute, the module's ``app``, then ``celery``, then its only Celery
instance, then the same in ``MODULE.celery``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from stack.errors import StackError

PASS_APP = "pass --app module:attr"
SKIPPED_DIRS = frozenset(
    {"__pycache__", "node_modules", "site-packages", "venv", "env", "build", "dist"}
    | {"tests", "test", "docs", "doc"}
)
MAX_DEPTH = 6  # package levels below the root
DEFAULT_ATTRS = ("app", "celery")  # what `celery -A MODULE` looks for, in order


class DiscoveryError(StackError):
    """The project's Celery app cannot be found or imported; the message says what to pass."""


@dataclass(frozen=True)
class Candidate:
    """A top-level ``attr = Celery(...)`` found in the source."""

    module: str
    attr: str
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.module}:{self.attr}"


def import_roots(root: Path) -> list[Path]:
    """Where the project's modules import from: the root, and ``src/`` in a src layout."""
    roots = [root]
    src = root / "src"
    if src.is_dir() and not (src / "__init__.py").exists():
        roots.append(src)
    return roots


@contextlib.contextmanager
def on_sys_path(paths: Sequence[Path]) -> Iterator[None]:
    """Put ``paths`` first on sys.path for the block; imported modules stay imported."""
    added = [str(p) for p in paths if str(p) not in sys.path]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def candidates(root: Path) -> list[Candidate]:
    """Every top-level ``name = Celery(...)`` under ``root``, by module name."""
    found: list[Candidate] = []
    for import_root in import_roots(root):
        for path in _python_files(import_root, skip=root / "src" if import_root == root else None):
            module = _module_name(path, import_root)
            if module is None:
                continue
            found.extend(Candidate(module, attr, path) for attr in celery_assignments(path))
    return sorted(set(found), key=lambda c: (c.module, c.attr))


def _python_files(top: Path, skip: Path | None) -> Iterator[Path]:
    for directory, dirs, files in os.walk(top):
        here = Path(directory)
        depth = len(here.relative_to(top).parts)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in SKIPPED_DIRS
            and depth < MAX_DEPTH
            and here / d != skip
            and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            if name.endswith(".py") and not _is_test_or_tool(name):
                yield here / name


def _is_test_or_tool(name: str) -> bool:
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name in {"conftest.py", "setup.py", "noxfile.py", "fabfile.py"}
    )


def _module_name(path: Path, import_root: Path) -> str | None:
    parts = list(path.relative_to(import_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    if parts == ["celery"]:
        return None  # a top-level celery.py shadows Celery itself: not importable as an app
    return ".".join(parts)


def celery_assignments(path: Path) -> list[str]:
    """Names a module binds at its top level to a ``Celery(...)`` call."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if "Celery" not in text:
        return []
    try:
        tree = ast.parse(text, filename=str(path))
    except (SyntaxError, ValueError):
        return []
    names, modules = _celery_names(tree)
    attrs: list[str] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if isinstance(value, ast.Call) and _is_celery(value.func, names, modules):
            attrs.extend(t.id for t in targets if isinstance(t, ast.Name))
    return attrs


def _celery_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Local names of ``celery.Celery`` and of the ``celery`` module in this module."""
    names: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "celery" and not node.level:
            names |= {a.asname or a.name for a in node.names if a.name == "Celery"}
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "celery"}
    return names, modules


def _is_celery(func: ast.expr, names: set[str], modules: set[str]) -> bool:
    if isinstance(func, ast.Name):
        return func.id in names
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "Celery"
        and isinstance(func.value, ast.Name)
        and func.value.id in modules
    )


def find_app(root: Path) -> str:
    """The ``module:attr`` of the one Celery app defined under ``root``."""
    root = root.resolve()
    found = candidates(root)
    if not found:
        raise DiscoveryError(
            f"no Celery app found under {root}: no module assigns `name = Celery(...)` at its "
            f"top level (tests, docs, virtualenvs and hidden directories are skipped); {PASS_APP}"
        )
    apps: list[Candidate] = []
    failures: list[str] = []
    with on_sys_path(import_roots(root)):
        for candidate in found:
            try:
                _import_attr(candidate.module, candidate.attr)
            except DiscoveryError as exc:
                failures.append(f"{candidate.ref} ({_shown(candidate.path, root)}): {exc}")
            else:
                apps.append(candidate)
    if len(apps) == 1:
        return apps[0].ref
    if apps:
        listed = ", ".join(f"{c.ref} ({_shown(c.path, root)})" for c in apps)
        raise DiscoveryError(
            f"{len(apps)} Celery apps found under {root}: {listed}; {PASS_APP} to choose one"
        )
    raise DiscoveryError(
        "a Celery app was found but does not import:\n  "
        + "\n  ".join(failures)
        + f"\nfix the import (run from the project root, install its dependencies) or {PASS_APP}"
    )


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def import_app_ref(ref: str, roots: Sequence[Path] = ()) -> tuple[str, Celery]:
    """Import ``MODULE[:ATTR]`` (``roots`` first on sys.path): its ``module:attr`` and app."""
    module_name, _, attr = ref.strip().partition(":")
    if not module_name or (not attr and ref.strip().endswith(":")):
        raise DiscoveryError(f"--app {ref!r}: expected MODULE or MODULE:ATTR, e.g. proj.celery:app")
    with on_sys_path(roots):
        if attr:
            return f"{module_name}:{attr}", _import_attr(module_name, attr)
        return _default_attr(module_name)


def _import_attr(module_name: str, attr: str) -> Celery:
    module = _import(module_name)
    app = getattr(module, attr, None)
    if not isinstance(app, Celery):
        got = "nothing" if app is None else type(app).__name__
        raise DiscoveryError(f"{module_name}:{attr} is not a Celery app (it is {got})")
    return app


def _import(module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # the user's code may raise anything on import
        raise DiscoveryError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None


def _has_submodule(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # the parent is no package
        return False


def _default_attr(module_name: str) -> tuple[str, Celery]:
    """``celery -A MODULE``'s lookup: app, celery, the only instance; then MODULE.celery."""
    for name in (module_name, f"{module_name}.celery"):
        if name != module_name and not _has_submodule(name):
            continue
        module = _import(name)
        for attr in DEFAULT_ATTRS:
            if isinstance(getattr(module, attr, None), Celery):
                return f"{name}:{attr}", getattr(module, attr)
        instances = sorted(k for k, v in vars(module).items() if isinstance(v, Celery))
        if len(instances) == 1:
            return f"{name}:{instances[0]}", getattr(module, instances[0])
        if len(instances) > 1:
            raise DiscoveryError(
                f"{name} holds {len(instances)} Celery apps ({', '.join(instances)}): "
                f"pass --app {name}:ATTR"
            )
    raise DiscoveryError(f"no Celery app in {module_name!r}: pass --app {module_name}:ATTR")
