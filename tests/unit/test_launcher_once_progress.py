"""One-shot lines (which, and shown as done) and the progress block's board."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from stack.checks.probes import StayedUp
from stack.errors import SettingsError
from stack.launcher.once import Done, mark_done
from stack.launcher.procfile import one_shots
from stack.launcher.progress import Board, ConsoleOutput, wanted
from stack.launcher.restart import Budget, Policy, Rule
from stack.launcher.running import Running, State
from stack.launcher.services import Service

LINES = {"redis": "r", "release": "migrate", "fixtures": "load", "worker": "w"}


def test_a_release_line_and_every_once_name_run_first_in_procfile_order():
    assert one_shots(LINES) == ("release",)
    assert one_shots(LINES, ["fixtures"]) == ("release", "fixtures")
    assert one_shots({"worker": "w"}) == ()


def test_once_naming_a_line_the_procfile_lacks_is_an_error_listing_the_lines():
    with pytest.raises(SettingsError, match=r"--once names seed, .*\(it has redis, release"):
        one_shots(LINES, ["seed"])


def test_a_finished_one_shot_is_done_counts_as_up_and_is_never_started_again():
    running = {
        "release": Running(
            Service("release", "migrate", StayedUp()),
            Budget(Rule(Policy.ALWAYS, max_restarts=1, window_s=1)),
        )
    }
    mark_done(running, [Done("release", 4242, 1.5)])
    r = running["release"]
    assert (r.state, r.pid, r.ready_after_s) == (State.DONE, 4242, 1.5)
    assert r.up and r.exited  # the table waits for nothing; a stop waits for nothing


def test_the_board_tracks_each_service_waiting_starting_ready_with_its_time():
    board = Board()
    board.update([{"name": "redis", "state": "starting"}, {"name": "api", "state": "pending"}], 0)
    board.update([{"name": "redis", "state": "ready"}, {"name": "api", "state": "starting"}], 0.5)
    assert board.lines(2.0) == [("redis", "ready", 0.5), ("api", "starting", 1.5)]
    board.update([{"name": "redis", "state": "ready"}, {"name": "api", "state": "ready"}], 3.0)
    assert board.lines(9.0) == [("redis", "ready", 0.5), ("api", "ready", 3.0)]


def test_the_board_renders_one_row_per_service():
    board = Board()
    board.update([{"name": "worker", "state": "pending"}, {"name": "seed", "state": "done"}], 0)
    out = io.StringIO()
    Console(file=out, width=80).print(board.render(1.0))
    assert "worker" in out.getvalue() and "waiting" in out.getvalue()
    assert "seed" in out.getvalue() and "done" in out.getvalue()


def test_console_output_prints_whole_lines_only():
    out = io.StringIO()
    sink = ConsoleOutput(Console(file=out, width=200))
    print("12:00:00 api | half", end="", file=sink)
    assert out.getvalue() == ""
    print(" and the rest", file=sink)
    assert out.getvalue() == "12:00:00 api | half and the rest\n"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_block_is_for_a_terminal_with_colour_outside_production():
    assert wanted(Tty(), True, "dev")
    assert not wanted(io.StringIO(), True, "dev")  # a pipe or a file
    assert not wanted(Tty(), False, "dev")  # --no-color or --json
    assert not wanted(Tty(), True, "production")
