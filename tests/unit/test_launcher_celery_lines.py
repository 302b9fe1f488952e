"""Reading what a Procfile line runs, when it runs Celery."""

from __future__ import annotations

import pytest

from stack.launcher.celery_lines import celery_line, expand_hostname, with_hostname


@pytest.mark.parametrize(
    ("command", "subcommand", "app"),
    [
        ("celery -A proj worker -Q a,b", "worker", "proj"),
        ("python -m celery --app=proj.celery:app beat -s x", "beat", "proj.celery:app"),
        ("X=1 /venv/bin/celery -A proj flower --port=5566", "flower", "proj"),
        ("mkdir -p d && celery -A proj beat", "beat", "proj"),
    ],
)
def test_a_celery_invocation_is_read_from_the_command(command, subcommand, app):
    parsed = celery_line(command)
    assert parsed is not None and (parsed.subcommand, parsed.app) == (subcommand, app)


@pytest.mark.parametrize(
    "command", ["gunicorn app:app", "python -m celery_tools worker", "echo celery && sleep 1"]
)
def test_other_commands_are_not_celery(command):
    assert celery_line(command) is None


def test_options_in_both_spellings_stop_at_a_shell_separator():
    parsed = celery_line("celery -A p worker -n a@%h --concurrency=2 && echo --port=1")
    assert parsed is not None
    assert parsed.option("-n", "--hostname") == "a@%h"
    assert parsed.option("--concurrency") == "2"
    assert parsed.option("--port") is None


def test_node_names_expand_like_celery_and_a_variable_is_left_to_the_process():
    assert expand_hostname("w1@%h", "box.example.org") == "w1@box.example.org"
    assert expand_hostname("%n-audit", "box.example.org") == "box-audit@box.example.org"
    assert expand_hostname("${NAME}@%h") is None


def test_a_hostname_is_given_right_after_the_worker_word():
    assert (
        with_hostname("celery -A p worker -Q a && echo worker", "jobs-1@h")
        == "celery -A p worker --hostname jobs-1@h -Q a && echo worker"
    )
