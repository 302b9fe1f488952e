"""How the API writes JSON: every value JSON can carry, carried faithfully; never a 500.

Starlette writes UTF-8 and FastAPI's fast path has pydantic write it: a string
holding a lone surrogate (``"\\ud800"``, valid in a JSON escape and in Python,
not in UTF-8) made ``/task-status`` answer a plain-text 500. Written here with
ASCII escapes, it comes back as ``"\\ud800"``, exactly what the task returned.
NaN and Infinity, which JSON lacks, become the strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"`` (:func:`stack.task_status.wire_value`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from stack.task_status import wire_value


class StackJSONResponse(JSONResponse):
    """The API's default response class (``create_app`` sets it for every route)."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


def render_json(content: Any) -> bytes:
    """``content`` as compact, ASCII-only, standard JSON (no NaN tokens)."""
    return json.dumps(
        wire_value(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")
    ).encode("ascii")
