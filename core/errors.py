"""Errors and exit codes shared by every command.

Two kinds of failure exist in tfm:

* a *fatal* error stops the command before (or instead of) any work: a bad flag,
  an unreadable model.  It is one line on stderr and exit status 2;
* an *item* error spoils one record: it becomes an error record in the output
  stream and a line on stderr, the run goes on, and the exit status is 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class TfmError(Exception):
    """A user-facing error: its message is one line that says what is wrong."""

    exit_code = EXIT_USAGE


class FatalError(TfmError):
    """Nothing useful can be done: unreadable model, bad option value, ..."""


class ItemError(TfmError):
    """One record cannot be processed; the others can.

    ``kind`` is a short machine-readable word that goes into the error record,
    e.g. ``missing-field``, ``too-long``, ``bad-json``.
    """

    exit_code = EXIT_ITEMS_FAILED

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


class StreamError(ItemError):
    """The input stream itself is broken (bad framing): nothing after it can be read."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised where it is safe to stop."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
