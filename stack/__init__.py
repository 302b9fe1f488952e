"""celery-stack: a real Celery + Redis stack you can start, break and measure."""

__version__ = "0.1.0"
