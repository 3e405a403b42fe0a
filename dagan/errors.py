"""The one exception type that means "the user's input is wrong", not "the code is wrong"."""


class DaganError(Exception):
    """A problem with the user's input or environment, reported as one line with exit code 2."""
