"""The plugin as a product: a fresh project with its own Celery app uses only the
installed celery-stack fixtures, and pytest on it passes (and fails where it should).

The example project below is the one the README shows under
"Testing your own Celery app".
"""

import pytest

from tests.integration.helpers import run_pytest, write_project

pytestmark = pytest.mark.integration

PROJECT = {
    "pytest.ini": """
        [pytest]
        stack_celery_app = shop.celery_app:app
        pythonpath = .
    """,
    "shop/__init__.py": "",
    "shop/celery_app.py": """
        from celery import Celery

        # The project's own broker: the harness rebinds the app to the test Redis.
        app = Celery("shop", broker="redis://127.0.0.1:1/0", include=["shop.tasks"])
        app.conf.task_default_queue = "orders"
    """,
    "shop/tasks.py": """
        from shop.celery_app import app


        @app.task
        def total(prices):
            return sum(prices)
    """,
    "tests/test_orders.py": """
        from shop.tasks import total


        def test_total_runs_in_a_real_worker(stack_redis, stack_app, stack_worker):
            stack_worker(concurrency=1)
            assert total.delay([2, 3, 5]).get(timeout=20) == 10
            assert stack_app.conf.broker_url == stack_redis.url


        def test_a_wrong_total_fails(stack_worker):
            stack_worker()
            assert total.delay([1, 1]).get(timeout=20) == 3
    """,
}


def test_a_fresh_project_tests_its_own_app_with_the_installed_plugin(tmp_path):
    run = run_pytest(write_project(tmp_path, PROJECT))
    output = run.stdout + run.stderr

    assert "celery-stack: Redis backend" in output, output
    assert "PASSED tests/test_orders.py::test_total_runs_in_a_real_worker" in output, output
    assert "FAILED tests/test_orders.py::test_a_wrong_total_fails" in output, output
    assert "1 failed, 1 passed" in output, output
    assert run.returncode == 1, output
    assert "worker stack-worker-" in output, "the failed test's report carries the worker log"
    assert "Task shop.tasks.total" in output, output


UNRELATED_PROJECT = {
    "pytest.ini": """
        [pytest]
        pythonpath = .
    """,
    "tests/test_plain.py": """
        import sys


        def test_arithmetic():
            assert 2 + 2 == 4


        def test_the_plugin_built_no_app_and_imported_no_task_module():
            assert not [m for m in sys.modules if m.startswith("stack.tasks")]
            assert "stack.celery_app" not in sys.modules
    """,
}


def test_a_project_not_using_the_fixtures_is_untouched_by_a_bad_stack_setting(tmp_path):
    run = run_pytest(write_project(tmp_path, UNRELATED_PROJECT), STACK_RETRY_DELAYS="garbage")
    output = run.stdout + run.stderr

    assert "2 passed" in output, output
    assert run.returncode == 0, output
    assert "celery_stack" in output or "celery-stack" in output, "the plugin was loaded"
