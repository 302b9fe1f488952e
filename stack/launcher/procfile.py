"""The Procfile: ``name: command`` lines in honcho's format, read with honcho's own parser."""

from __future__ import annotations

from pathlib import Path

from stack.errors import SettingsError

DEFAULT_PROCFILE = Path("Procfile")


def parse_procfile(text: str) -> dict[str, str]:
    """Process name -> command, in file order (honcho's own parser)."""
    from honcho.environ import parse_procfile as honcho_parse

    try:
        processes = honcho_parse(text).processes
    except AssertionError as exc:  # honcho asserts unique names
        raise SettingsError(f"Procfile: {exc}") from None
    return dict(processes)


def load_procfile(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(
            f"cannot read Procfile {str(path)!r} ({exc.strerror}): run `celery-stack up` "
            "from the project root or pass --procfile"
        ) from None
    processes = parse_procfile(text)
    if not processes:
        raise SettingsError(f"Procfile {str(path)!r} has no `name: command` line")
    return processes
