"""One exception tree: every error celery-stack raises on purpose is a StackError.

Each message names the problem and the fix, so the CLI can print it as is and
exit non-zero, and the API can answer with it.
"""


class StackError(Exception):
    """Base of every deliberate celery-stack error."""


class SettingsError(StackError):
    """A setting is malformed, missing or unsafe; the message names the variable."""


class BrokerUnavailable(StackError):
    """Redis did not answer in time (raised at the boundary from redis/kombu errors)."""


class UnknownTask(StackError):
    """A task name that the Celery app does not register."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown task {name!r}: it is not registered in the Celery app "
            "(check the name, or set STACK_CELERY_APP to the app that defines it)"
        )
        self.name = name


PRIORITY_NAMES = ("critical", "high", "normal", "low")
PRIORITY_HINT = "priority is set with priority= (critical, high, normal, low, or 0-9), not queue="


class UnknownQueue(StackError):
    """A queue name outside the configured queues (a seed's ``queue="normal"`` among them)."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        lead = (
            f"{name!r} is a priority, not a queue: " if str(name).lower() in PRIORITY_NAMES else ""
        )
        super().__init__(
            f"unknown queue {name!r}: expected one of {', '.join(known)} ({lead}{PRIORITY_HINT})"
        )
        self.name = name
        self.known = known


class DeadLetterNotFound(StackError):
    """No dead-letter record with that id."""

    def __init__(self, record_id: str) -> None:
        super().__init__(
            f"no dead letter with id {record_id!r} (list them with `celery-stack dlq list`)"
        )
        self.record_id = record_id


class PortInUse(StackError):
    """A port the stack needs is already taken."""

    def __init__(self, service: str, port: int, variable: str) -> None:
        super().__init__(
            f"port {port} for {service} is already in use: stop whatever listens there "
            f"or set {variable} to a free port"
        )
        self.service, self.port, self.variable = service, port, variable


class ServiceFailed(StackError):
    """A service of the stack exited or never became ready."""


class RedisServerError(StackError):
    """A Redis server could not be started, found or controlled."""


class InsecureSettings(SettingsError):
    """The production profile found missing or unsafe settings; the message lists each one."""


class ProfileError(StackError):
    """A load profile is unknown or malformed; the message names the file and the field."""


class LoadTestFailed(StackError):
    """A load test could not run or produced no verdict (not a crossed gate: that is exit 1)."""


class RedeliveryLimitExceeded(StackError):
    """A task's worker died under it more than STACK_MAX_REDELIVERIES times: dead-lettered."""


class TaskNotDone(StackError):
    """A task waited for (``submit --wait``) did not succeed: still running, failed or dead."""


class ArgumentsTooDeep(StackError):
    """Task arguments nest deeper than MAX_ARGUMENT_DEPTH: refused by submit (the API's 422)
    and dead-lettered by a worker that receives them anyway."""


class ReplayInProgress(StackError):
    """Another replay of the same dead letter is still publishing (past the claim timeout)."""
