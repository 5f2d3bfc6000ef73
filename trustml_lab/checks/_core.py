"""What every self-check shares: a clear pass line, or a hint raised as CheckFailed."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["CheckFailed", "call_learner", "passed", "require"]


class CheckFailed(AssertionError):
    """The learner's answer is not right yet; the message says what to look at."""


def passed(name: str, detail: str = "") -> None:
    """Print the pass line of check ``name``.

    >>> passed("demo", "all 3 cases agree")
    PASS demo: all 3 cases agree
    """
    print(f"PASS {name}" + (f": {detail}" if detail else ""))


def require(condition: bool, name: str, hint: str) -> None:
    """Raise :class:`CheckFailed` with ``hint`` unless ``condition`` holds.

    >>> require(1 + 1 == 3, "demo", "1 + 1 is 2")
    Traceback (most recent call last):
    ...
    trustml_lab.checks._core.CheckFailed: demo: not yet. 1 + 1 is 2
    """
    if not condition:
        raise CheckFailed(f"{name}: not yet. {hint}")


def call_learner(name: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the learner's function, turning a stub or a crash into a readable hint."""
    if not callable(function):
        raise CheckFailed(f"{name}: expected a function, got {type(function).__name__}")
    try:
        return function(*args, **kwargs)
    except NotImplementedError as err:
        raise CheckFailed(
            f"{name}: your function still raises NotImplementedError; replace "
            "`raise NotImplementedError()` with your code"
        ) from err
    except CheckFailed:
        raise
    except Exception as err:  # the learner's code crashed: say where, keep the cause
        raise CheckFailed(f"{name}: your function raised {type(err).__name__}: {err}") from err
