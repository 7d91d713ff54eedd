"""The one exception type meant for users."""


class BenchError(Exception):
    """A problem the user can fix: shown as one line saying what to do, never as a traceback."""
