"""The test harness: which Redis runs, Redis servers, real worker subprocesses."""
