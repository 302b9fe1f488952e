"""`celery-stack up`: services from a Procfile and a profile, started in order, supervised."""
