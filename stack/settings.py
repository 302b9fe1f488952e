"""Settings: every knob of the stack, read once from the environment and `.env`.

Nothing else in the package reads ``os.environ``: the edge (CLI, API factory,
``celery -A``) builds one :class:`Settings` and passes it in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from stack.envfile import read_env_file
from stack.errors import SettingsError
from stack.rates import parse_rate
from stack.redis_url import check_redis_url, is_sentinel, redact

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_RETRY_DELAYS_S = (60.0, 300.0, 900.0)  # the seeds' 1 min / 5 min / 15 min
DEFAULT_VISIBILITY_TIMEOUT_S = 3600  # kombu's default; every retry delay must stay below it
DEAD_LETTER_MAX_ENTRIES = 10_000  # Sidekiq's Dead set keeps 10,000 ...
DEAD_LETTER_MAX_AGE_S = 180 * 86_400  # ... for 180 days
# STACK_DEAD_LETTER_MAX_ENTRIES at most (records carry tracebacks: ~20 GB of Redis), and
# so the furthest a page of dead letters may start: every record stays reachable.
DEAD_LETTER_ENTRIES_CEILING = 1_000_000
PAGE_OFFSET_MAX = DEAD_LETTER_ENTRIES_CEILING
PAGE_LIMIT_MAX = 1000  # one page of records stays a few MB at most
# kombu's built-in serializers; preflight refuses the ones that run code (pickle, yaml).
SERIALIZERS = ("json", "msgpack", "pickle", "yaml")
URL_FIELDS = ("redis_url", "celery_broker_url", "celery_result_backend")
URL_VARIABLES = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")

Profile = Literal["dev", "production"]


def _env(name: str, *more: str) -> Any:
    """Bind a field to its environment variable(s); the first name is the one errors cite."""
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    """Every setting with its unit in its name; the env var is the first alias."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, frozen=True, case_sensitive=False
    )

    profile: Profile = Field("dev", validation_alias=_env("STACK_PROFILE"))

    # Where Redis is. CELERY_* override REDIS_URL, as in the seeds.
    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias=_env("REDIS_URL"))
    celery_broker_url: str | None = Field(None, validation_alias=_env("CELERY_BROKER_URL"))
    celery_result_backend: str | None = Field(None, validation_alias=_env("CELERY_RESULT_BACKEND"))
    redis_password: SecretStr | None = Field(None, validation_alias=_env("STACK_REDIS_PASSWORD"))
    # Redis Sentinel (a sentinel:// URL): the master's name and the sentinels' own password.
    sentinel_master: str | None = Field(None, validation_alias=_env("STACK_SENTINEL_MASTER"))
    sentinel_password: SecretStr | None = Field(
        None, validation_alias=_env("STACK_SENTINEL_PASSWORD")
    )
    redis_ssl_ca_certs: Path | None = Field(None, validation_alias=_env("STACK_REDIS_SSL_CA_CERTS"))
    redis_ssl_certfile: Path | None = Field(None, validation_alias=_env("STACK_REDIS_SSL_CERTFILE"))
    redis_ssl_keyfile: Path | None = Field(None, validation_alias=_env("STACK_REDIS_SSL_KEYFILE"))

    # Which Redis the test harness runs: a container when a Docker engine answers, else local.
    redis_backend: Literal["auto", "docker", "local"] = Field(
        "auto", validation_alias=_env("STACK_REDIS_BACKEND")
    )
    redis_image: str = Field("redis:7", validation_alias=_env("STACK_REDIS_IMAGE"))

    # The user's own Celery app (module:attr); default the reference app.
    celery_app: str = Field("stack.celery_app:app", validation_alias=_env("STACK_CELERY_APP"))

    # Isolation: every Redis key of ours and every queue name can carry a prefix.
    key_prefix: str = Field("stack:", validation_alias=_env("STACK_KEY_PREFIX"))
    queue_prefix: str = Field("", validation_alias=_env("STACK_QUEUE_PREFIX"))

    # Ports and hosts of the dev stack.
    api_host: str = Field("127.0.0.1", validation_alias=_env("API_HOST"))
    api_port: int = Field(8001, ge=1, le=65535, validation_alias=_env("API_PORT"))
    api_workers: int = Field(1, ge=1, validation_alias=_env("STACK_API_WORKERS"))
    flower_port: int = Field(5555, ge=1, le=65535, validation_alias=_env("FLOWER_PORT"))
    flower_basic_auth: SecretStr | None = Field(
        None, validation_alias=_env("STACK_FLOWER_BASIC_AUTH")
    )
    flower_cookie_secret: SecretStr | None = Field(
        None, validation_alias=_env("STACK_FLOWER_COOKIE_SECRET")
    )
    # Flower's own switch, read here only so that the production preflight can refuse it.
    flower_unauthenticated_api: bool = Field(
        False, validation_alias=_env("FLOWER_UNAUTHENTICATED_API")
    )
    data_dir: Path = Field(Path(".stack"), validation_alias=_env("STACK_DATA_DIR"))

    # Time limits and results (seeds: soft 5 min, hard 10 min, results 1 h).
    task_timeout_s: float = Field(300.0, gt=0, validation_alias=_env("TASK_TIMEOUT"))
    task_hard_timeout_s: float | None = Field(
        None, gt=0, validation_alias=_env("STACK_TASK_HARD_TIMEOUT")
    )
    result_expires_s: int = Field(3600, gt=0, validation_alias=_env("STACK_RESULT_EXPIRES"))
    visibility_timeout_s: int = Field(
        DEFAULT_VISIBILITY_TIMEOUT_S, gt=0, validation_alias=_env("STACK_VISIBILITY_TIMEOUT")
    )

    # Retries and dead letters.
    retry_delays_s: Annotated[tuple[float, ...], NoDecode] = Field(
        DEFAULT_RETRY_DELAYS_S, validation_alias=_env("STACK_RETRY_DELAYS")
    )
    max_retries: int = Field(3, ge=0, validation_alias=_env("STACK_MAX_RETRIES"))
    retry_jitter: float = Field(0.0, ge=0, le=1, validation_alias=_env("STACK_RETRY_JITTER"))
    max_redeliveries: int = Field(3, ge=1, validation_alias=_env("STACK_MAX_REDELIVERIES"))
    dead_letter_max_entries: int = Field(
        DEAD_LETTER_MAX_ENTRIES,
        ge=1,
        le=DEAD_LETTER_ENTRIES_CEILING,
        validation_alias=_env("STACK_DEAD_LETTER_MAX_ENTRIES"),
    )
    dead_letter_max_age_s: int = Field(
        DEAD_LETTER_MAX_AGE_S, ge=1, validation_alias=_env("STACK_DEAD_LETTER_MAX_AGE")
    )

    # Global rate limits per task type: "diagnostics.limited=5/s,files.process_csv=10/m".
    rate_limits: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, validation_alias=_env("STACK_RATE_LIMITS")
    )

    # Workers. The queues `up`'s worker consumes (its -Q): None, every queue the app sends to.
    worker_queues: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, validation_alias=_env("STACK_WORKER_QUEUES")
    )
    worker_concurrency: int = Field(2, ge=1, validation_alias=_env("STACK_WORKER_CONCURRENCY"))
    worker_max_tasks_per_child: int | None = Field(
        None, ge=1, validation_alias=_env("STACK_WORKER_MAX_TASKS_PER_CHILD")
    )
    worker_max_memory_per_child_kb: int | None = Field(
        None, ge=1, validation_alias=_env("STACK_WORKER_MAX_MEMORY_PER_CHILD")
    )
    shutdown_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("STACK_SHUTDOWN_TIMEOUT"))
    # Celery >= 5.5: on a cold shutdown, running tasks get this long first (0: off).
    worker_soft_shutdown_timeout_s: float = Field(
        0.0, ge=0, validation_alias=_env("STACK_WORKER_SOFT_SHUTDOWN_TIMEOUT")
    )
    # `celery-stack up`: seconds each service may take to become ready (loaded CI is slow).
    ready_timeout_s: float = Field(30.0, gt=0, validation_alias=_env("STACK_READY_TIMEOUT"))
    task_events: bool = Field(True, validation_alias=_env("STACK_TASK_EVENTS"))

    # Observability: Prometheus counters kept in Redis; log lines as JSON objects.
    metrics_enabled: bool = Field(True, validation_alias=_env("STACK_METRICS"))
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("STACK_LOG_FORMAT"))
    service_name: str = Field("celery-stack", validation_alias=_env("STACK_SERVICE"))

    # Security.
    api_key: SecretStr | None = Field(None, validation_alias=_env("STACK_API_KEY"))
    # Production: reading task data (dead letters, task status, queues, metrics) needs the API
    # key too; an operator whose own access control already guards the API opts out here.
    api_open_reads: bool = Field(False, validation_alias=_env("STACK_API_OPEN_READS"))
    # Log lines without task arguments and results (None: on in production, off in dev).
    log_redact: bool | None = Field(None, validation_alias=_env("STACK_LOG_REDACT"))
    max_body_bytes: int = Field(1_048_576, ge=1, validation_alias=_env("STACK_MAX_BODY_BYTES"))
    task_serializer: str = Field("json", validation_alias=_env("STACK_TASK_SERIALIZER"))

    # How a submitted task runs (the seeds' rollback plan): celery (queued for a worker),
    # direct (in the submitting process, no Redis, no worker), auto (celery while the broker
    # answers, else direct with a warning). Production refuses direct and auto.
    execution: Literal["celery", "direct", "auto"] = Field(
        "celery", validation_alias=_env("STACK_EXECUTION")
    )

    # Seconds a publish may retry before the caller gets BrokerUnavailable.
    publish_timeout_s: float = Field(3.0, gt=0, validation_alias=_env("STACK_PUBLISH_TIMEOUT"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what ``load()`` gathered: it reads the environment and ``.env`` itself,
        so ``load(environ=...)`` (a child's or a test's settings) sees nothing else."""
        return (init_settings,)

    @field_validator(*URL_FIELDS)
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value)

    @field_validator("task_serializer")
    @classmethod
    def _known_serializer(cls, value: str) -> str:
        if value.lower() not in SERIALIZERS:
            raise ValueError(f"unknown serializer: expected one of {', '.join(SERIALIZERS)}")
        return value.lower()

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _parse_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return tuple(float(part) for part in value.split(",") if part.strip())
            except ValueError:
                raise ValueError("expected comma-separated seconds, e.g. 60,300,900") from None
        return value

    @field_validator("retry_delays_s")
    @classmethod
    def _delays_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("expected at least one delay, none negative, e.g. 60,300,900")
        return value

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _parse_queue_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = tuple(part.strip() for part in value.split(",") if part.strip())
            return names or None
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _parse_rate_limits(cls, value: Any) -> Any:
        if isinstance(value, str):
            limits: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in value.split(","))):
                name, sep, rate = item.partition("=")
                if not sep or not name.strip() or not rate.strip():
                    which = "" if item == value.strip() else f", not {item!r}"
                    raise ValueError(
                        f"expected task=rate pairs like diagnostics.limited=5/s{which}"
                    )
                try:
                    parse_rate(rate)  # refused here, not once a worker loads the app
                except ValueError as exc:
                    raise ValueError(
                        f"rate of {name.strip()}: {exc}; write task=rate pairs, "
                        "e.g. diagnostics.limited=5/s,files.process_csv=10/m"
                    ) from None
                limits[name.strip()] = rate.strip()
            return limits
        return value

    @model_validator(mode="after")
    def _hard_limit_above_soft(self) -> Settings:
        if self.task_hard_timeout_s is not None and self.task_hard_timeout_s <= self.task_timeout_s:
            raise ValueError(
                "STACK_TASK_HARD_TIMEOUT must be greater than TASK_TIMEOUT (the soft limit)"
            )
        return self

    @model_validator(mode="after")
    def _sentinel_has_master(self) -> Settings:
        named = [
            variable
            for variable, url in zip(
                URL_VARIABLES,
                (self.redis_url, self.celery_broker_url, self.celery_result_backend),
                strict=True,
            )
            if url and is_sentinel(url)
        ]
        if named and not self.sentinel_master:
            raise ValueError(
                f"{named[0]} names Redis Sentinels: set STACK_SENTINEL_MASTER to the name of "
                "the master they watch (their `sentinel monitor <name> ...` line, e.g. mymaster)"
            )
        return self

    # Derived values: one place computes them.

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.celery_result_backend or self.redis_url

    @property
    def redacts_logs(self) -> bool:
        """Whether log lines leave task arguments and results out (STACK_LOG_REDACT)."""
        return self.profile == "production" if self.log_redact is None else self.log_redact

    @property
    def guards_reads(self) -> bool:
        """Whether reads of task data need the API key (production, unless opted out)."""
        return self.profile == "production" and not self.api_open_reads

    @property
    def hard_timeout_s(self) -> float:
        """The seeds' hard limit is twice the soft one (5 min -> 10 min)."""
        return self.task_hard_timeout_s or self.task_timeout_s * 2

    @classmethod
    def load(
        cls,
        env_file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Read settings once: explicit overrides, then the environment, then `.env`.

        ``env_file`` (or ``STACK_ENV_FILE``) names a file that must exist; without
        one, ``./.env`` is read when present.
        """
        env = os.environ if environ is None else environ
        named = env_file or env.get("STACK_ENV_FILE")
        if named is not None:
            path = Path(named)
            if not path.is_file():
                raise SettingsError(
                    f"env file {str(path)!r} does not exist: create it or unset STACK_ENV_FILE"
                )
        else:
            path = Path(".env")
        files = (path,) if path.is_file() else ()
        source = dict(_read_env_files(files))
        source.update({k.upper(): v for k, v in env.items()})
        source.update(overrides)
        try:
            return cls.model_validate(source)
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc)) from None


def _read_env_files(files: tuple[Path, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for file in files:
        values.update(read_env_file(file))
    return values


def describe_errors(exc: ValidationError) -> str:
    """One line per bad value: the env var, what it got, what it expects."""
    lines = []
    for error in exc.errors():
        loc = error["loc"][0] if error["loc"] else None
        field = Settings.model_fields.get(str(loc)) if loc is not None else None
        alias = field.validation_alias if field is not None else None
        name = alias.choices[0] if isinstance(alias, AliasChoices) else str(loc or "settings")
        got = error.get("input")
        if name in URL_VARIABLES and isinstance(got, str):
            got = redact(got)  # a URL may carry the Redis password
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}{shown}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a child process (worker, API, beat)."""
    env: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None or value == field.default:
            continue
        alias = field.validation_alias
        variable = alias.choices[0] if isinstance(alias, AliasChoices) else name.upper()
        env[str(variable)] = _env_value(value)
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple):
        return ",".join(repr(v) if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
