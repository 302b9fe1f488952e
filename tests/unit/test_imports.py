"""Importing the package's entry points has no side effect: no task module, no app, no env read
that can fail (a project with celery-stack installed pays nothing for it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

WATCHED = ("stack.tasks", "stack.celery_app")  # task modules, and the one module that builds
PROBE = """
import json, sys
import {modules}
print(json.dumps(sorted(m for m in sys.modules if m.startswith({watched!r}))))
"""


def imported_after(modules: str, **env: str) -> list[str]:
    """The task and app modules loaded by importing ``modules`` in a fresh interpreter."""
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules, watched=WATCHED)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=True,
    )
    return list(json.loads(run.stdout))


@pytest.mark.parametrize("module", ["stack", "stack.pytest_plugin", "stack.task", "stack.submit"])
def test_importing_an_entry_point_imports_no_task_module_and_builds_no_app(module):
    assert imported_after(module) == []


def test_a_malformed_setting_in_the_environment_does_not_break_an_import():
    modules = "stack.pytest_plugin, stack.task, stack.submit, stack.api, stack.cli"
    assert imported_after(modules, STACK_RETRY_DELAYS="garbage", STACK_MAX_RETRIES="x") == []
