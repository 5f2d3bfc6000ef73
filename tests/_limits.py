"""A per-call time limit for tests: a call that hangs fails the test instead of blocking the suite."""

from __future__ import annotations

import signal
from contextlib import contextmanager


class CallTimedOut(Exception):
    """Raised inside the call when its time is up (never raised by the package itself)."""


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`CallTimedOut` in the block after ``seconds`` (SIGALRM: main thread, POSIX)."""
    def expire(signum, frame):
        raise CallTimedOut(f"the call did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
