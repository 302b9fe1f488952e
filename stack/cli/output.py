"""Output helpers shared by the subcommand modules (kept apart so they import no cycle)."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(value: Any) -> None:
    """Print VALUE as indented JSON: what `--json` promises a script."""
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
