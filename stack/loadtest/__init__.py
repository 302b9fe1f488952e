"""Load tests of a running stack: profiles, gates, the Locust users and the runner.

Only ``locustfile.py`` and ``shape.py`` import Locust (which monkey-patches the
process with gevent): they run inside the Locust subprocess and nothing in
``stack`` imports them. The rest is plain logic the CLI and tests can use.
"""
