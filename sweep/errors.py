"""The two errors a user's mistake becomes, in a module of their own.

Every layer raises them (the sweep file's schema, data sources, model factories, trial workers),
so they live below all of those: ``sweep.spec.config`` and ``sweep.inputs`` both import them from
here instead of from each other. Both are picklable, so they cross from a Ray worker intact, and
both print as one line.
"""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as the one line a user reads: ``Type: first line of its message`` (at most
    ``limit`` characters of it), or just ``Type`` when it has no message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__


class SweepConfigError(ValueError):
    """A user mistake in a sweep file: which file, which key, what was expected."""

    def __init__(self, file: str, key: str, expected: str):
        self.file, self.key, self.expected = file, key, expected
        super().__init__(f"{file}: {key}: {expected}" if key else f"{file}: {expected}")

    def __reduce__(self) -> tuple:  # picklable, so it crosses from a Ray worker intact
        return (type(self), (self.file, self.key, self.expected))


class InputError(ValueError):
    """A user mistake found outside config validation (data, model factory, ...).

    Raised by modules that do not know which file the sweep came from; the runner turns it
    into a :class:`SweepConfigError` naming the file.
    """

    def __init__(self, key: str, expected: str):
        self.key, self.expected = key, expected
        super().__init__(f"{key}: {expected}")

    def __reduce__(self) -> tuple:  # picklable, so it crosses from a Ray worker intact
        return (type(self), (self.key, self.expected))
