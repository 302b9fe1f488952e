"""stack.app_finder: a project's Celery app found from its source tree, or a clear error."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from celery import Celery

from stack.app_finder import (
    DiscoveryError,
    candidates,
    celery_assignments,
    find_app,
    import_app_ref,
)

APP = 'from celery import Celery\napp = Celery("x", set_as_current=False)\n'


@pytest.fixture
def project(tmp_path):
    """write({relative path: text}) under a fresh root; {pkg} is a unique package name."""
    pkg = f"proj_{uuid.uuid4().hex[:8]}"
    saved = list(sys.path)

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / name.format(pkg=pkg)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).format(pkg=pkg))
        return tmp_path

    write.pkg = pkg  # type: ignore[attr-defined]
    yield write
    sys.path[:] = saved
    for name in [m for m in sys.modules if m.split(".")[0] in {pkg, "tasks", "app", "worker"}]:
        del sys.modules[name]


def test_a_package_celery_module_is_found_as_module_attr(project):
    root = project({"{pkg}/__init__.py": "", "{pkg}/celery.py": APP, "{pkg}/tasks.py": "x = 1"})
    assert find_app(root) == f"{project.pkg}.celery:app"


def test_find_app_leaves_sys_path_as_it_was(project):
    root = project({"{pkg}/__init__.py": "", "{pkg}/celery.py": APP})
    before = list(sys.path)
    find_app(root)
    assert sys.path == before


def test_a_top_level_module_with_another_name_and_an_alias(project):
    root = project(
        {
            "worker.py": """
                import celery as c
                from celery import Celery as Make
                queue_app: Make = Make("q", set_as_current=False)
                unrelated = dict(a=1)
            """
        }
    )
    assert find_app(root) == "worker:queue_app"


def test_celery_dot_celery_calls_count(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import celery\nbroker = celery.Celery('m')\nother = Celery('m')\n")
    assert celery_assignments(path) == ["broker"]  # a bare Celery never imported is no app


def test_tests_docs_virtualenvs_and_hidden_directories_are_skipped(project):
    root = project(
        {
            "{pkg}/__init__.py": "",
            "{pkg}/celery.py": APP,
            "tests/conftest.py": APP,
            "tests/test_app.py": APP,
            "docs/example.py": APP,
            ".venv/lib/site.py": APP,
            "venv2/pyvenv.cfg": "",
            "venv2/lib/mod.py": APP,
            "node_modules/x.py": APP,
            "{pkg}/test_local.py": APP,
        }
    )
    assert [c.ref for c in candidates(root)] == [f"{project.pkg}.celery:app"]


def test_a_src_layout_imports_from_src(project):
    root = project({"src/{pkg}/__init__.py": "", "src/{pkg}/celery.py": APP})
    assert find_app(root) == f"{project.pkg}.celery:app"


def test_two_apps_are_ambiguous_and_the_error_lists_both_and_says_pass_app(project):
    root = project({"app.py": APP, "{pkg}/__init__.py": "", "{pkg}/celery.py": APP})
    with pytest.raises(DiscoveryError) as caught:
        find_app(root)
    message = str(caught.value)
    assert "2 Celery apps found" in message
    assert "app:app (app.py)" in message
    assert f"{project.pkg}.celery:app ({project.pkg}/celery.py)" in message
    assert "pass --app module:attr" in message


def test_no_app_is_an_error_saying_pass_app(project):
    root = project({"{pkg}/__init__.py": "", "{pkg}/models.py": "from celery import Celery\n"})
    with pytest.raises(DiscoveryError, match=r"no Celery app found under .*pass --app module:attr"):
        find_app(root)


def test_an_app_that_does_not_import_names_the_module_and_the_error(project):
    root = project({"tasks.py": "import not_installed_anywhere\n" + APP})
    with pytest.raises(DiscoveryError) as caught:
        find_app(root)
    message = str(caught.value)
    assert "tasks:app (tasks.py)" in message
    assert "ModuleNotFoundError" in message and "not_installed_anywhere" in message
    assert "--app" in message


def test_a_name_rebound_to_something_else_is_not_an_app(project):
    root = project({"tasks.py": APP + "app = None\n"})
    with pytest.raises(DiscoveryError, match="is not a Celery app"):
        find_app(root)


def test_a_top_level_celery_py_is_not_taken_for_the_app(project):
    root = project({"celery.py": APP})
    with pytest.raises(DiscoveryError, match="no Celery app found"):
        find_app(root)


def test_import_app_ref_with_and_without_attr(project):
    root = project(
        {
            "{pkg}/__init__.py": "",
            "{pkg}/celery.py": APP + "other = app\n",
        }
    )
    pkg = project.pkg
    ref, app = import_app_ref(f"{pkg}.celery:other", [root])
    assert ref == f"{pkg}.celery:other" and isinstance(app, Celery)
    assert import_app_ref(f"{pkg}.celery", [root])[0] == f"{pkg}.celery:app"
    assert import_app_ref(pkg, [root])[0] == f"{pkg}.celery:app"  # like celery -A proj


def test_import_app_ref_finds_the_only_instance_under_any_name(project):
    root = project({"{pkg}.py": 'from celery import Celery\nbroker = Celery("b")\n'})
    assert import_app_ref(project.pkg, [root])[0] == f"{project.pkg}:broker"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "expected MODULE or MODULE:ATTR"),
        ("mod:", "expected MODULE or MODULE:ATTR"),
        ("no_such_module_here:app", "cannot import 'no_such_module_here': ModuleNotFoundError"),
        ("json:dumps", "json:dumps is not a Celery app"),
        ("json", "no Celery app in 'json': pass --app json:ATTR"),
    ],
)
def test_import_app_ref_errors_are_clear(ref, message):
    with pytest.raises(DiscoveryError, match=message.replace("(", r"\(")):
        import_app_ref(ref)


def test_a_module_raising_on_import_is_a_discovery_error(project):
    root = project({"{pkg}.py": "raise RuntimeError('needs DATABASE_URL')\n"})
    with pytest.raises(DiscoveryError, match="RuntimeError: needs DATABASE_URL"):
        import_app_ref(f"{project.pkg}:app", [root])
