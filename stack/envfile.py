"""`.env` files read strictly: each line parses, or loading stops naming the file and the line.

python-dotenv logs "could not parse statement starting at line N" and drops the
line, so a typo silently lost a setting; a file that is not UTF-8 text raised a
UnicodeDecodeError from inside it. Here both are a SettingsError saying where
and what to fix. Values are shown only up to their ``=``: they may be secrets.
"""

from __future__ import annotations

import io
from pathlib import Path

from stack.errors import SettingsError

FORM = 'expected KEY=VALUE, one per line (quote a value holding spaces or #: KEY="a b")'
SHOWN_CHARS = 40


def read_env_file(path: Path) -> dict[str, str]:
    """The file's variables (names upper-cased, ``${VAR}`` expanded as python-dotenv does)."""
    from dotenv import dotenv_values  # only when a file is read: importing stays cheap
    from dotenv.parser import parse_stream

    text = _text(path)
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            shown = _statement(binding.original.string)
            raise SettingsError(f"env file {str(path)!r} line {line}: cannot parse {shown}: {FORM}")
        if binding.key is not None and binding.value is None:
            raise SettingsError(
                f"env file {str(path)!r} line {line}: {binding.key!r} has no value: {FORM} "
                f"({binding.key}= for an empty value)"
            )
    values = dotenv_values(stream=io.StringIO(text))
    return {key.upper(): value for key, value in values.items() if value is not None}


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(
            f"cannot read env file {str(path)!r} ({exc.strerror}): check its permissions, "
            "or name another with --env-file / STACK_ENV_FILE"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SettingsError(
            f"env file {str(path)!r} line {line}: not UTF-8 text (byte {data[exc.start]:#04x}): "
            "is it a binary file? Save it as UTF-8 text, KEY=VALUE per line"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise SettingsError(
            f"env file {str(path)!r} line {line}: a NUL byte: is it a binary file? "
            "Save it as UTF-8 text, KEY=VALUE per line"
        )
    return text


def _statement(statement: str) -> str:
    """The unparsable statement, cut at its ``=`` (the value may be a secret) and shortened."""
    first = statement.strip().splitlines()[0] if statement.strip() else ""
    name, sep, _ = first.partition("=")
    shown = f"{name}=..." if sep else first
    return repr(shown if len(shown) <= SHOWN_CHARS else shown[:SHOWN_CHARS] + "...")
