import json

from stack.checks.probes import StayedUp
from stack.launcher.services import Service
from stack.launcher.table import render_json, render_table, row_of

ROWS = [
    row_of(Service("redis", "r", StayedUp(), "redis://127.0.0.1:6379/0"), "ready", 11, 0.05),
    row_of(Service("api", "a", StayedUp(), "http://127.0.0.1:8001/docs"), "ready", 12, 1.234),
    row_of(Service("docs", "d", StayedUp()), "pending", None, None),
]


def test_the_table_has_one_aligned_line_per_service_with_url_and_state():
    lines = render_table(ROWS, 1.5).splitlines()
    assert lines[0].split() == ["service", "state", "url", "pid", "ready", "after"]
    assert lines[2].split() == ["redis", "ready", "redis://127.0.0.1:6379/0", "11", "0.05", "s"]
    assert lines[3].split() == ["api", "ready", "http://127.0.0.1:8001/docs", "12", "1.23", "s"]
    assert lines[4].split() == ["docs", "pending", "-", "-", "-"]
    assert len({line.index("state") for line in lines[:1]} | {lines[2].index("ready")}) == 1


def test_the_table_ends_with_the_total_start_up_time_and_how_to_stop():
    assert render_table(ROWS, 1.5).splitlines()[-1] == (
        "3 services ready in 1.50 s; Ctrl-C stops them all"
    )


def test_json_is_one_line_a_script_can_parse():
    text = render_json(ROWS, 1.5)
    assert "\n" not in text
    data = json.loads(text)
    assert data["ready"] is True and data["ready_after_s"] == 1.5
    assert data["services"][1] == {
        "name": "api",
        "state": "ready",
        "url": "http://127.0.0.1:8001/docs",
        "pid": 12,
        "ready_after_s": 1.234,
    }
