"""The profile's step or spike shape: ``locust -f loadtests/locustfile.py,loadtests/shape.py``.

Use it with a profile that has a ``[shape]`` (``--stack-profile step`` or ``spike``,
or ``loadtests/profiles/step.toml``); ``--users`` and ``--run-time`` scale it.
"""

from stack.loadtest.shape import ProfileShape

__all__ = ["ProfileShape"]
