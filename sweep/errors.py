"""The two errors a user's mistake becomes, in a module of their own.

Every layer raises them (the sweep file's schema, data sources, model factories, trial workers),
so they live below all of those: ``sweep.spec.config`` and ``sweep.inputs`` both import them from
here instead of from each other. Both are picklable, so they cross from a Ray worker intact, and
both print as one line.
"""

from __future__ import annotations

from pathlib import Path


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as the one line a user reads: ``Type: first line of its message`` (at most
    ``limit`` characters of it), or just ``Type`` when it has no message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__


# lines of Keras' and TensorFlow's errors that frame the cause rather than say it
_FRAMING = ("Graph execution error", "Detected at node", "File ", "[[", "Traceback", "Stack trace", "Exception encountered when calling",
            "Arguments received by", "•")


def telling_line(exc: BaseException, limit: int = 400) -> str:
    """The sentence of a Keras or TensorFlow error that says what went wrong, whole: their
    messages open with a header ("Exception encountered when calling Lambda.call().", "Graph
    execution error:") and wrap one sentence over several lines, so the first line alone was
    the header or half the advice ("Object Net was created by passing"). The first paragraph
    that is not framing, its lines joined, at most ``limit`` characters."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # Keras bolds the cause with terminal codes
    paragraphs = [[line.strip() for line in block.splitlines() if line.strip()] for block in re.split(r"\n\s*\n", text)]
    for lines in paragraphs:
        telling = [line for line in lines if not line.startswith(_FRAMING) and not line.endswith(":")]
        if telling:
            joined = " ".join(telling)
            return joined if len(joined) <= limit else joined[: limit - 3] + "..."
    return type(exc).__name__


def raised_at(exc: BaseException) -> str:
    """`` (file.py:LINE)``: where in the user's own code ``exc`` was raised, else ``""``.

    The innermost frame of its traceback outside installed packages, the standard library and
    this package: the line a user must open (a NameError in their factory, or the call in their
    code that handed Keras a bad argument), which the one-line message would otherwise drop.
    """
    import sysconfig
    import traceback

    library = tuple(
        str(Path(p).resolve()) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(Path(__file__).parent)}
    )
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        name = frame.filename
        if name.startswith("<") or "site-packages" in name or "dist-packages" in name:
            continue
        if str(Path(name).resolve()).startswith(library):
            continue
        return f" ({Path(name).name}:{frame.lineno})"
    return ""


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
