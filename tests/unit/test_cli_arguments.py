"""The subcommands' argument types: a bad value is a usage error naming what it expects."""

from __future__ import annotations

from argparse import ArgumentTypeError

import pytest

from stack.cli import build_parser
from stack.cli.arguments import bounded_float, bounded_int, json_list, json_object
from stack.settings import PAGE_LIMIT_MAX, PAGE_OFFSET_MAX


def test_args_must_be_a_json_list_and_kwargs_a_json_object():
    assert json_list('[1, "a"]') == [1, "a"]
    assert json_object('{"rows": 3}') == {"rows": 3}
    with pytest.raises(ArgumentTypeError, match=r"JSON list .*\(keyword arguments go in --kwargs"):
        json_list('{"a": 1}')  # used to run echo("a")
    with pytest.raises(ArgumentTypeError, match=r"JSON object .*\(positional arguments go"):
        json_object("[1]")  # used to be a TypeError traceback
    with pytest.raises(ArgumentTypeError, match=r"in JSON, e\.g\."):
        json_list("[1,")
    with pytest.raises(ArgumentTypeError, match="nested too deeply"):
        json_list("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("text", ["-5", "0", "1001", "abc", "1.5", "9223372036854775808"])
def test_a_bounded_int_refuses_what_lies_outside(text):
    with pytest.raises(ArgumentTypeError, match=rf"from 1 to 1000, got {text!r}"):
        bounded_int(1, 1000)(text)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "x"])
def test_a_positive_float_refuses_zero_negative_and_non_finite(text):
    with pytest.raises(ArgumentTypeError, match="above 0"):
        bounded_float(0, low_open=True)(text)
    assert bounded_float(0, 1)("1") == 1.0


def test_the_dlq_page_bounds_are_the_apis():
    parser = build_parser()
    args = parser.parse_args(["dlq", "list", "--offset", str(PAGE_OFFSET_MAX)])
    assert (args.offset, args.limit) == (PAGE_OFFSET_MAX, 50)
    for bad in (["--limit", str(PAGE_LIMIT_MAX + 1)], ["--offset", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["dlq", "list", *bad])
        assert exit_.value.code == 2


def test_a_global_app_option_names_the_users_app_for_every_subcommand(monkeypatch):
    """`celery-stack -A proj.celery:app status` reads the app as STACK_CELERY_APP would."""
    import stack.cli as cli

    seen = {}

    def handler(settings, args):
        seen["app"] = settings.celery_app
        return 0

    parser = cli.build_parser()
    args = parser.parse_args(["-A", "proj.celery:app", "status"])
    assert args.stack_app == "proj.celery:app"
    monkeypatch.setattr(cli, "build_parser", lambda: _with_handler(parser, handler))
    assert cli.main(["-A", "proj.celery:app", "status"]) == 0
    assert seen["app"] == "proj.celery:app"


def _with_handler(parser, handler):
    parser.set_defaults(handler=handler)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(handler=handler)
    return parser
