"""``celery -A stack.celery_app``: the module-level ``app`` Celery's command line needs.

The one module that builds an app on import: the app ``STACK_CELERY_APP``
names (default: the reference app), bound to the Redis the settings name.
Everything else calls :func:`stack.app_factory.load_app` instead.
"""

from stack.app_factory import load_app
from stack.settings import Settings

app = load_app(Settings.load())
