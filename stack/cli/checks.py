"""`celery-stack health`, `preflight` and `doctor`: checks that exit non-zero on a problem."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from stack.cli.output import print_json
from stack.settings import Settings

if TYPE_CHECKING:
    from stack.checks.doctor import Report


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    from stack.checks.healthcheck import healthy

    ok, detail = healthy(settings, args.service, args.hostname)
    print(f"{args.service}: {'healthy' if ok else 'unhealthy'} ({detail})")
    return 0 if ok else 1


def add_health(sub: Any) -> None:
    from stack.checks.healthcheck import SERVICES

    p = sub.add_parser("health", help="container healthcheck: exit 0 when SERVICE serves")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--hostname", default=None, help="worker: its node name (default worker@HOST)")
    p.set_defaults(handler=cmd_health)


def cmd_preflight(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 with a count of warnings; an unsafe production setting raises (exit 1)."""
    from stack.preflight import preflight

    warned = preflight(settings, os.environ, probe_redis=not args.no_redis)
    print(f"preflight: the {settings.profile} profile may start ({len(warned)} warnings)")
    return 0


def add_preflight(sub: Any) -> None:
    p = sub.add_parser(
        "preflight",
        help="check every security setting (production: exit 1 listing each unsafe item)",
    )
    p.add_argument("--no-redis", action="store_true", help="skip the Redis auth probe")
    p.set_defaults(handler=cmd_preflight)


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from stack.checks.doctor import run_doctor

    report = run_doctor(settings, os.environ)
    print_json(report.as_dict()) if args.json else print(render_report(report))
    return 0 if report.ok else 1


def add_doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check settings, Redis, workers and a real task round trip; each problem with its fix",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_doctor)


LEVEL_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def render_report(report: Report) -> str:
    width = max(len(check.name) for check in report.checks)
    lines = []
    for check in report.checks:
        lines.append(f"{LEVEL_MARK[check.level]:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.level in ("warn", "fail"):
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    failed = sum(check.level == "fail" for check in report.checks)
    warned = sum(check.level == "warn" for check in report.checks)
    verdict = "the stack can run tasks" if report.ok else f"{failed} essential check(s) failed"
    lines.append(f"doctor: {verdict} ({warned} warning(s))")
    return "\n".join(lines)
