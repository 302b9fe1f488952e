"""The rate syntax (``5/s``, ``100/m``, ``10/5s``) of STACK_RATE_LIMITS and ``global_rate_limit``.

Pure parsing, kept at the bottom layer so that Settings refuses a malformed rate
when it loads, before any service starts; :mod:`stack.ratelimit` owns the
limiter that enforces a rate.
"""

from __future__ import annotations

import re

PERIODS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
RATE_PATTERN = re.compile(r"^\s*(\d+)\s*(?:/\s*(\d*\.?\d*)\s*([smhd])?)?\s*$")
RATE_FORM = "a positive count per s, m, h or d, e.g. 5/s, 100/m, 10/5s"


def parse_rate(text: str | int) -> tuple[int, float]:
    """``(count, period_s)`` of ``"5/s"``, ``"100/m"``, ``"10/5s"``; a bare number is per second.

    Raises ValueError naming the text and the expected form.
    """
    match = RATE_PATTERN.match(str(text))
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"invalid rate {text!r}: expected {RATE_FORM}")
    count, multiple, unit = match.groups()
    if multiple and not unit:
        raise ValueError(f"invalid rate {text!r}: the period needs a unit (s, m, h, d)")
    try:
        period = float(multiple or 1) * PERIODS_S[unit or "s"]
    except ValueError:  # a lone "." as the multiple
        raise ValueError(f"invalid rate {text!r}: expected {RATE_FORM}") from None
    if period <= 0:
        raise ValueError(f"invalid rate {text!r}: the period must be positive")
    return int(count), period
