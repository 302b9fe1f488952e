"""ProcessTree against real (tiny) processes: the warm stop and the kill reach the right ones."""

import signal
import subprocess
import time

import psutil

from stack.launcher.process_tree import ProcessTree

PARENT_AND_CHILD = "sleep 30 & exec sleep 31"  # a main process with a child of its own


def all_sleeping(pid: int) -> bool:
    """The shell forked its children and each one has exec'd its `sleep`."""
    children = psutil.Process(pid).children()
    try:
        return bool(children) and all(child.name() == "sleep" for child in children)
    except psutil.NoSuchProcess:
        return False


def start(command: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, shell=True, start_new_session=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all_sleeping(process.pid):
        time.sleep(0.01)
    return process


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone_within(processes: list[psutil.Process], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(alive(p.pid) for p in processes):
            return True
        time.sleep(0.02)
    return False


def test_the_warm_stop_goes_to_the_command_under_the_shell_not_to_its_children():
    shell = start("sleep 30 & sleep 31; true")  # sh stays: its children are the commands
    tree = ProcessTree(shell.pid)
    children = psutil.Process(shell.pid).children()
    try:
        tree.signal(signal.SIGTERM, whole_group=False)
        assert gone_within(children, 5)
    finally:
        tree.signal(signal.SIGKILL, whole_group=True)
        shell.wait(5)


def test_the_kill_reaches_a_descendant_that_left_the_group_after_its_parent_died():
    main = start("setsid sleep 30 & exec sleep 31")
    tree = ProcessTree(main.pid)
    tree.refresh()
    escaped = [p for p in psutil.Process(main.pid).children() if p.name() == "sleep"]
    assert escaped and all(p.pid != main.pid for p in escaped)
    main.kill()
    main.wait(5)  # the escaped sleep is now re-parented and in its own session
    tree.signal(signal.SIGKILL, whole_group=True)
    assert gone_within(escaped, 5)
