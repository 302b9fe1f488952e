"""What a user's Procfile line runs, when it runs Celery: ``celery -A proj worker ...`` and kin.

A line of any name that runs a Celery worker, beat or Flower is gated like the
stack's own (:mod:`stack.launcher.dev`): a worker on a ping to the node name it
uses (one is given when the line picks none), beat on its start-up, Flower on
its health check. Pure parsing of the command text; nothing runs here.
"""

from __future__ import annotations

import re
import shlex
import socket
from dataclasses import dataclass

SUBCOMMANDS = ("worker", "beat", "flower")
SEPARATORS = frozenset({"&&", "||", ";", "|", "&"})
APP_OPTIONS = ("-A", "--app")
HOSTNAME_OPTIONS = ("-n", "--hostname")
CELERY_PROGRAM = re.compile(r"(?:^|/)celery$")
# Where a hostname is inserted: right after the first `worker` that follows `celery`.
WORKER_WORD = re.compile(r"(\bcelery\b.*?\sworker\b)")


@dataclass(frozen=True)
class CeleryLine:
    """A Procfile command that runs ``celery <subcommand>``."""

    subcommand: str  # worker | beat | flower
    app: str | None  # -A / --app
    options: tuple[str, ...]  # the tokens after the subcommand, up to a shell separator

    def option(self, *names: str) -> str | None:
        """The value of ``--name=value``, ``--name value`` or ``-n value`` (last one wins)."""
        value = None
        tokens = list(self.options)
        for index, token in enumerate(tokens):
            for name in names:
                if token == name and index + 1 < len(tokens):
                    value = tokens[index + 1]
                elif token.startswith(f"{name}=") and name.startswith("--"):
                    value = token.split("=", 1)[1]
        return value


def celery_line(command: str) -> CeleryLine | None:
    """The Celery invocation in ``command`` (``celery ...``, ``python -m celery ...``), if any."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    for start, token in enumerate(tokens):
        by_module = token == "celery" and start > 0 and tokens[start - 1] == "-m"
        if not (CELERY_PROGRAM.search(token) or by_module):
            continue
        app = None
        rest = tokens[start + 1 :]
        for index, word in enumerate(rest):
            if word in SEPARATORS:
                break
            if word in APP_OPTIONS and index + 1 < len(rest):
                app = rest[index + 1]
            elif word.startswith("--app="):
                app = word.split("=", 1)[1]
            elif word in SUBCOMMANDS:
                options = []
                for option in rest[index + 1 :]:
                    if option in SEPARATORS:
                        break
                    options.append(option)
                return CeleryLine(word, app, tuple(options))
    return None


def expand_hostname(template: str, host: str | None = None) -> str | None:
    """Celery's ``%h`` / ``%n`` / ``%d`` in a node name; None when a variable decides it."""
    if "$" in template:
        return None
    full = host or socket.gethostname()
    short, _, domain = full.partition(".")
    name = template.replace("%h", full).replace("%n", short).replace("%d", domain)
    return name if "@" in name else f"{name}@{full}"


def with_hostname(command: str, hostname: str) -> str:
    """``command`` with ``--hostname`` given to its worker (right after the word ``worker``)."""
    return WORKER_WORD.sub(lambda m: f"{m.group(1)} --hostname {shlex.quote(hostname)}", command, 1)
