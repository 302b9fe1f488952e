#!/usr/bin/env python3
"""`python start_production.py`: the seed guide's all-in-one production start.

Thin on purpose: it is `celery-stack up --profile production` with the Procfile
beside this file. Settings come from the environment and `.env`; with anything
missing or unsafe it exits non-zero listing every item and the variable that
fixes it. Extra arguments go to `up` (e.g. `--only redis,worker`, `--json`).
"""

import sys
from pathlib import Path

from stack.cli import main

if __name__ == "__main__":
    procfile = Path(__file__).resolve().parent / "Procfile"
    sys.exit(main(["up", "--profile", "production", "--procfile", str(procfile), *sys.argv[1:]]))
