"""Locust entry point for a celery-stack: the API user and the Celery user.

    locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 20s \
        --host http://127.0.0.1:8001 --csv reports/load/stats --html reports/load/report.html

Options of ours (each also an environment variable, STACK_LOAD_<NAME>):
``--stack-profile`` (built-in name or ``loadtests/profiles/*.toml``), and the
gates ``--max-p95-ms``, ``--max-p99-ms``, ``--max-fail-ratio``,
``--min-tasks-per-s``, ``--max-final-depth``; a crossed gate makes Locust exit 1.
Settings (REDIS_URL, STACK_API_KEY...) come from the environment, as for the stack.

The users live in ``stack.loadtest.locustfile`` so that ``celery-stack load``
works from an installed package; add your own User classes below.
"""

from stack.loadtest.locustfile import ApiTaskUser, CeleryTaskUser

__all__ = ["ApiTaskUser", "CeleryTaskUser"]
