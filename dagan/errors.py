"""The one exception type that means "the user's input is wrong", not "the code is wrong"."""

import sys


class DaganError(Exception):
    """A problem with the user's input or environment, reported as one line with exit code 2."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), for one-line error reports."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def warn(message: str) -> None:
    """Tell the user about something skipped or doubtful, on one line of standard error; the run goes on."""
    print(f"dagan: warning: {message}", file=sys.stderr)
