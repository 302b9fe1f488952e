"""`celery-stack init`'s files (stack.scaffold) and the subcommand, without Redis or workers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from celery import Celery
from dotenv.parser import parse_stream

from stack.cli import main
from stack.launcher.dev import STOCK_REDIS_LINES
from stack.launcher.procfile import parse_procfile
from stack.loadtest.profiles import load_profile, misfits
from stack.scaffold import discover, init_project, install_commands, plan, pytest_config, write_new
from stack.scaffold import files as render
from stack.settings import Settings

REF = "bakery.celery:app"
ALL_FILES = [
    "Procfile",
    ".env.example",
    "pytest.ini",
    "tests/test_celery_stack_smoke.py",
    "loadtests/celery-stack.toml",
    ".github/workflows/celery-stack.yml",
]


def bakery_app(schedule: bool = True, tasks: bool = True) -> Celery:
    app = Celery("bakery", set_as_current=False)
    app.conf.task_routes = {"bakery.tasks.frost": {"queue": "icing"}}
    if schedule:
        app.conf.beat_schedule = {"knead": {"task": "bakery.tasks.knead", "schedule": 30.0}}
    if tasks:

        @app.task(shared=False, name="bakery.tasks.knead")
        def knead():
            return "dough"

        @app.task(shared=False, name="bakery.tasks.frost")
        def frost(cake, colour="white"):
            return f"{colour} {cake}"

        @app.task(shared=False, name="bakery.tasks.log", ignore_result=True)
        def log():
            return None

    @app.task(shared=False, name="diagnostics.echo")
    def echo(value=None):
        return value

    return app


def found_for(app: Celery):
    return discover(REF, app)


# ---------------------------------------------------------------- Procfile


def test_the_procfile_runs_the_stack_with_every_queue_and_beat_when_scheduled():
    text = render.procfile(found_for(bakery_app()))
    processes = parse_procfile(text)
    assert list(processes) == ["redis", "api", "worker", "beat", "flower"]
    assert processes["redis"] in STOCK_REDIS_LINES  # `up` runs redis-server for it directly
    assert "-Q celery,icing " in processes["worker"]
    assert "--hostname ${STACK_WORKER_HOSTNAME:-worker@%h}" in processes["worker"]
    assert "uvicorn --factory stack.api:create_app" in processes["api"]
    for name in ("api", "worker", "beat", "flower"):
        assert f"STACK_CELERY_APP=${{STACK_CELERY_APP:-{REF}}}" in processes[name], name
    assert "celery -A stack.celery_app beat" in processes["beat"]


def test_no_periodic_task_no_beat_line():
    text = render.procfile(found_for(bakery_app(schedule=False)))
    assert "beat" not in parse_procfile(text)
    assert "no beat line" in text


def test_the_worker_line_names_the_app_unless_the_environment_does(tmp_path):
    command = parse_procfile(render.procfile(found_for(bakery_app())))["worker"]
    shown = command.replace("celery -A", "printenv STACK_CELERY_APP; : celery -A")
    env = {"PATH": "/usr/bin:/bin"}
    assert subprocess.run(["sh", "-c", shown], env=env, capture_output=True, text=True).stdout == (
        REF + "\n"
    )
    mine = {**env, "STACK_CELERY_APP": "mine:app"}
    out = subprocess.run(["sh", "-c", shown], env=mine, capture_output=True, text=True).stdout
    assert out == "mine:app\n"


# ---------------------------------------------------------------- .env.example, load profile


def test_env_example_loads_as_a_dot_env(tmp_path):
    path = tmp_path / ".env"
    path.write_text(render.env_example(found_for(bakery_app())))
    for binding in parse_stream(io.StringIO(path.read_text())):  # every line parses
        assert not binding.error and (binding.key is None or binding.value), binding
    settings = Settings.load(env_file=path, environ={})
    assert settings.celery_app == REF
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.api_port, settings.flower_port) == (8001, 5555)


def test_the_load_profile_is_valid_and_fits_the_apps_tasks(tmp_path):
    app = bakery_app()
    path = tmp_path / "celery-stack.toml"
    path.write_text(render.load_profile(found_for(app)))
    profile = load_profile(path)
    assert [t.name for t in profile.tasks] == ["diagnostics.echo", "bakery.tasks.knead"]
    assert misfits(profile, app.tasks) == []
    text = path.read_text()
    assert "# bakery.tasks.frost needs cake: fill in args/kwargs\n# [[tasks]]" in text
    assert "# bakery.tasks.log ignores its result" in text


# ---------------------------------------------------------------- tests and pytest settings


def test_the_smoke_test_runs_echo_and_the_argument_less_task():
    text = render.smoke_test(found_for(bakery_app()))
    compile(text, "test_celery_stack_smoke.py", "exec")
    assert "def test_a_real_worker_of_the_app_answers_diagnostics_echo(" in text
    assert 'TASK = "bakery.tasks.knead"' in text
    assert "def test_a_real_worker_runs_knead(stack_app, stack_worker):" in text
    assert "stack_worker(queues=worker_queues(stack_app))" in text
    assert "(beat also sends it)" in text


def test_without_an_argument_less_task_the_smoke_test_explains_and_lists_them():
    app = Celery("bakery", set_as_current=False)

    @app.task(shared=False, name="bakery.tasks.bake")
    def bake(loaf, minutes):
        return loaf

    text = render.smoke_test(found_for(app))
    compile(text, "test_celery_stack_smoke.py", "exec")
    assert "TASK =" not in text
    assert "# No task of bakery.celery:app runs without arguments" in text
    assert "#   bakery.tasks.bake(loaf, minutes)" in text


@pytest.mark.parametrize("src_layout", [False, True])
def test_the_conftest_variant_compiles_and_names_the_app(src_layout):
    text = render.conftest(found_for(bakery_app()), src_layout)
    compile(text, "conftest.py", "exec")
    assert f'STACK_CELERY_APP = "{REF}"' in text
    assert ("sys.path.insert" in text) is src_layout


@pytest.mark.parametrize(
    ("files", "config"),
    [
        ({}, None),
        ({"pytest.ini": "[pytest]\n"}, "pytest.ini"),
        ({".pytest.ini": "[pytest]\n"}, ".pytest.ini"),
        ({"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"}, "pyproject.toml"),
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, None),
        ({"tox.ini": "[tox]\n[pytest]\naddopts = -q\n"}, "tox.ini"),
        ({"setup.cfg": "[tool:pytest]\naddopts = -q\n"}, "setup.cfg"),
        ({"setup.cfg": "[metadata]\nname = x\n"}, None),
    ],
)
def test_pytest_config_is_found_in_pytests_order(tmp_path, files, config):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert pytest_config(tmp_path) == config


def test_a_pyproject_pytest_config_gets_a_conftest_not_a_shadowing_pytest_ini(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = '-q'\n")
    planned, notes = plan(tmp_path, found_for(bakery_app()))
    assert "pytest.ini" not in planned and "conftest.py" in planned
    assert notes == []


def test_an_existing_pytest_ini_without_the_option_gets_a_note(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -q\n")
    planned, notes = plan(tmp_path, found_for(bakery_app()))
    assert "pytest.ini" in planned  # planned, and kept because it exists
    assert notes == [f"add `stack_celery_app = {REF}` to the [pytest] section of pytest.ini"]


def test_pytest_config_elsewhere_and_a_conftest_of_its_own_is_a_note(tmp_path):
    (tmp_path / "tox.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text("")
    _, notes = plan(tmp_path, found_for(bakery_app()))
    assert notes and "pytest is configured in tox.ini" in notes[0]


def test_pytest_config_that_names_the_app_already_needs_nothing(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        f"[tool.pytest.ini_options]\nstack_celery_app = '{REF}'\n"
    )
    planned, notes = plan(tmp_path, found_for(bakery_app()))
    assert "conftest.py" not in planned and "pytest.ini" not in planned and notes == []


# ---------------------------------------------------------------- workflow install


@pytest.mark.parametrize(
    ("files", "commands"),
    [
        ({}, ["# no requirements.txt or installable project found: install yours here"]),
        ({"requirements.txt": "celery\n"}, ["python -m pip install -r requirements.txt"]),
        ({"pyproject.toml": "[project]\nname = 'x'\n"}, ["python -m pip install -e ."]),
        (
            {"pyproject.toml": "[tool.ruff]\n"},
            ["# no requirements.txt or installable project found: install yours here"],
        ),
        (
            {"requirements.txt": "", "setup.py": ""},
            ["python -m pip install -r requirements.txt", "python -m pip install -e ."],
        ),
    ],
)
def test_install_commands(tmp_path, files, commands):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert install_commands(tmp_path) == commands


# ---------------------------------------------------------------- writing


def test_write_new_never_overwrites(tmp_path):
    path = tmp_path / "a" / "b.txt"
    assert write_new(path, "one")
    assert not write_new(path, "two")
    assert path.read_text() == "one"
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert not write_new(tmp_path / "link", "x")  # a dangling symlink is something there


@pytest.fixture
def bakery(tmp_path):
    """A project with a uniquely named package (`{pkg}`), removed from sys.modules after."""
    pkg = f"bakery_{uuid.uuid4().hex[:8]}"
    files = {
        f"{pkg}/__init__.py": "",
        f"{pkg}/celery.py": f"""
            from celery import Celery

            print("the bakery is open")  # a user module printing on import
            app = Celery("{pkg}", broker="amqp://guest@localhost//", include=["{pkg}.tasks"])
            app.conf.task_routes = {{"{pkg}.tasks.frost": "icing"}}
        """,
        f"{pkg}/tasks.py": f"""
            from {pkg}.celery import app

            @app.task(shared=False)
            def frost(cake):
                return cake
        """,
    }
    write_tree(tmp_path, files)
    yield tmp_path, pkg
    for name in [m for m in sys.modules if m.split(".")[0] == pkg]:
        del sys.modules[name]


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_init_project_writes_every_file_then_keeps_them_all(bakery):
    root, pkg = bakery
    first = init_project(root)
    assert first.found.ref == f"{pkg}.celery:app"
    assert first.written == ALL_FILES and first.kept == []
    assert first.found.queues.names == ("celery", "icing")
    assert not first.found.periodic.needs_beat and first.found.smoke_task is None
    before = {name: (root / name).read_text() for name in ALL_FILES}
    (root / "Procfile").write_text("web: mine\n")
    second = init_project(root, f"{pkg}.celery:app")
    assert second.written == [] and second.kept == ALL_FILES
    assert (root / "Procfile").read_text() == "web: mine\n"
    assert {n: (root / n).read_text() for n in ALL_FILES[1:]} == {
        n: before[n] for n in ALL_FILES[1:]
    }


def test_the_cli_prints_written_and_kept_and_json_lists_them(bakery, capsys):
    root, pkg = bakery
    assert main(["init", "--dir", str(root)]) == 0
    out = capsys.readouterr()
    assert f"celery-stack init: {pkg}.celery:app" in out.out
    assert "wrote Procfile" in out.out and "wrote .github/workflows/celery-stack.yml" in out.out
    assert "the bakery is open" in out.err  # the app's own prints go to stderr
    assert main(["init", "--dir", str(root), "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["written"] == [] and report["kept"] == ALL_FILES
    assert report["app"] == f"{pkg}.celery:app" and report["queues"] == ["celery", "icing"]
    assert main(["init", "--dir", str(root)]) == 0
    assert "kept Procfile (exists)" in capsys.readouterr().out


def test_the_cli_without_an_app_exits_1_with_the_fix_and_no_traceback(tmp_path, capsys):
    (tmp_path / "models.py").write_text("x = 1\n")
    assert main(["init", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("celery-stack: error: no Celery app found under")
    assert "pass --app module:attr" in err and "Traceback" not in err
    assert not (tmp_path / "Procfile").exists()


def test_the_cli_with_an_app_that_cannot_import_exits_1(tmp_path, capsys):
    assert main(["init", "--dir", str(tmp_path), "--app", "no_such_module_xyz:app"]) == 1
    err = capsys.readouterr().err
    assert "cannot import 'no_such_module_xyz'" in err and "Traceback" not in err


def test_a_task_module_that_fails_to_import_is_a_clear_error(tmp_path, capsys):
    pkg = f"broken_{uuid.uuid4().hex[:8]}"
    write_tree(
        tmp_path,
        {
            f"{pkg}/__init__.py": "",
            f"{pkg}/celery.py": f"""
                from celery import Celery
                app = Celery("b", include=["{pkg}.tasks"])
            """,
            f"{pkg}/tasks.py": "raise KeyError('SECRET_KEY')\n",
        },
    )
    try:
        assert main(["init", "--dir", str(tmp_path)]) == 1
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == pkg]:
            del sys.modules[name]
    err = capsys.readouterr().err
    assert f"{pkg}.celery:app: importing its task modules failed: KeyError" in err
