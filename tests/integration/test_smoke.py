import pytest

from stack.submit import submit

pytestmark = pytest.mark.integration


def test_echo_runs_in_a_real_worker(stack_app, stack_worker):
    stack_worker(concurrency=1)
    task_id = submit(stack_app, "diagnostics.echo", ["hello"])
    assert stack_app.AsyncResult(task_id).get(timeout=20) == "hello"
