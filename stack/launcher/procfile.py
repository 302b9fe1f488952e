"""The Procfile: ``name: command`` lines in honcho's format, checked line by line.

honcho's own parser silently drops every line its pattern does not match (a
missing colon, a space in the name, an empty command), so a typo'd line just
never runs. Here every such line is an error naming its number and the fix,
all of them in one message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from stack.errors import SettingsError

DEFAULT_PROCFILE = Path("Procfile")
SYSTEM = "system"  # the launcher's own log prefix (honcho's name for it): no process may take it
NAME = re.compile(r"[A-Za-z0-9_-]+")  # honcho's process-name pattern
NAME_HINT = "letters, digits, '_' and '-'"


def parse_procfile(text: str, source: str = "Procfile") -> dict[str, str]:
    """Process name -> command, in file order; SettingsError listing every bad line."""
    processes: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        problem = _line_problem(line, processes, first_seen)
        if problem is not None:
            errors.append(f"line {number}: {problem}")
            continue
        name, _, command = line.partition(":")
        processes[name] = command.strip()
        first_seen[name] = number
    if errors:
        raise SettingsError(
            f"{source}: {len(errors)} bad line{'s' if len(errors) > 1 else ''} "
            "(each line is `name: command`):\n  " + "\n  ".join(errors)
        )
    return processes


def _line_problem(line: str, processes: dict[str, str], first_seen: dict[str, int]) -> str | None:
    """Why a (non-blank, non-comment) line is not a process, with the fix; None when it is."""
    name, colon, command = line.partition(":")
    if line[0].isspace():
        return f"{_short(line)} is indented: honcho ignores it; start the line with the name"
    if not colon:
        return f"{_short(line)} has no colon: write it as `name: command`"
    if not name:
        return f"{_short(line)} has no process name before the colon: write `name: command`"
    if not NAME.fullmatch(name):
        bad = sorted({c for c in name if not NAME.fullmatch(c)})
        shown = ", ".join("a space" if c == " " else repr(c) for c in bad)
        fixed = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "web"
        return f"process name {name!r} contains {shown}: use only {NAME_HINT} (e.g. {fixed!r})"
    if not command.strip():
        return f"process {name!r} has no command after the colon: write `{name}: <command>`"
    if name == SYSTEM:
        return f"process name {SYSTEM!r} is the launcher's own log prefix: rename the process"
    if name in processes:
        return (
            f"process name {name!r} is already used on line {first_seen[name]}: "
            "process names must be unique, rename one of them"
        )
    return None


def _short(line: str, limit: int = 60) -> str:
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")


def load_procfile(path: Path) -> dict[str, str]:
    """The Procfile at ``path``; SettingsError (never a traceback) when unreadable or not text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(
            f"cannot read Procfile {str(path)!r} ({exc.strerror}): run `celery-stack up` "
            "from the project root or pass --procfile"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"Procfile {str(path)!r} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
            f"{exc.start}): a Procfile is plain `name: command` lines; check --procfile "
            "names the right file"
        ) from None
    if "\x00" in text:
        raise SettingsError(
            f"Procfile {str(path)!r} contains NUL bytes, so it is not a text file: a Procfile "
            "is plain `name: command` lines; check --procfile names the right file"
        )
    processes = parse_procfile(text, source=f"Procfile {str(path)!r}")
    if not processes:
        raise SettingsError(f"Procfile {str(path)!r} has no `name: command` line")
    return processes


RELEASE = "release"  # Heroku's one-shot line: runs to completion before the others start


def one_shots(lines: dict[str, str], once: Sequence[str] = ()) -> tuple[str, ...]:
    """The lines to run to completion first, in Procfile order: a `release:` line and every
    ``--once NAME``; SettingsError naming a ``--once`` the Procfile does not define."""
    unknown = [name for name in once if name not in lines]
    if unknown:
        raise SettingsError(
            f"--once names {', '.join(unknown)}, which the Procfile does not define "
            f"(it has {', '.join(lines)})"
        )
    return tuple(name for name in lines if name == RELEASE or name in once)
