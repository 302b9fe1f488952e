"""The load shape of a profile (step or spike), for Locust.

Add it next to the locustfile: ``locust -f loadtests/locustfile.py,loadtests/shape.py``
(``celery-stack load`` does so when the profile has a shape). It reads
``--users``, ``--spawn-rate`` and ``--run-time`` and scales the profile's
shape to them; without ``--run-time`` it runs for DEFAULT_RUN_TIME_S.
"""

from __future__ import annotations

from locust import LoadTestShape

from stack.loadtest.profiles import DEFAULT_PROFILE, Shape, load_profile

DEFAULT_RUN_TIME_S = 60.0  # a shape needs an end; one minute when --run-time is not given
DEFAULT_USERS = 10


class ProfileShape(LoadTestShape):
    """Users over time as the profile's ``[shape]`` says, scaled to the common options."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._shape: Shape | None = None

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        if self._shape is None:
            self._shape = load_profile(getattr(options, "stack_profile", DEFAULT_PROFILE)).shape
        users = getattr(options, "num_users", None) or DEFAULT_USERS
        spawn_rate = getattr(options, "spawn_rate", None) or float(users)
        run_time_s = getattr(options, "run_time", None) or DEFAULT_RUN_TIME_S
        count = self._shape.users_at(self.get_run_time(), float(run_time_s), users)
        return None if count is None else (count, spawn_rate)
