"""The profiles `up` knows (dev, production, ha) and :func:`build_services`, which picks one.

A profile is a function from (settings, Procfile commands, "Redis already
runs") to services, so the production profile reuses the dev one and
overrides commands. The registry lives here, above both, so neither imports
the other's caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from stack.errors import SettingsError
from stack.launcher.dev import dev_services
from stack.launcher.ha import ha_services
from stack.launcher.production import production_services
from stack.launcher.services import Service
from stack.preflight import warn_once
from stack.settings import Settings

ProfileBuilder = Callable[[Settings, Mapping[str, str], bool], list[Service]]


def dev_profile(settings: Settings, commands: Mapping[str, str], running: bool) -> list[Service]:
    """The dev stack; it only warns (one line) about what production would refuse."""
    warn_once(settings)
    return dev_services(settings, commands, running)


PROFILES: dict[str, ProfileBuilder] = {
    "dev": dev_profile,
    "production": production_services,
    "ha": ha_services,  # dev on a master, a replica and three sentinels
}


def build_services(
    settings: Settings,
    commands: Mapping[str, str],
    profile: str = "dev",
    only: Sequence[str] | None = None,
    redis_running: bool = False,
) -> list[Service]:
    """The services of ``profile``, restricted to ``only`` (dependencies outside it dropped)."""
    builder = PROFILES.get(profile)
    if builder is None:
        raise SettingsError(
            f"profile {profile!r} is not available (known: {', '.join(sorted(PROFILES))})"
        )
    if only:
        unknown = sorted(set(only) - set(commands))
        if unknown:
            raise SettingsError(
                f"--only names {', '.join(unknown)}, which the Procfile does not define "
                f"(it has {', '.join(commands)})"
            )
        commands = {name: cmd for name, cmd in commands.items() if name in only}
    services = builder(settings, commands, redis_running)
    names = {service.name for service in services}
    return [
        dataclasses.replace(s, requires=tuple(r for r in s.requires if r in names))
        for s in services
    ]
