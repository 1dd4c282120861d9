"""How a tfm command lives and dies: signals, broken pipes, error lines, exit codes.

Every command runs its body through :func:`run`, so the rules of
tfm-stream(5) and the exit statuses of the man pages hold everywhere:
0 all good, 1 some items failed, 2 fatal/usage error, 130 interrupted.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
from typing import BinaryIO, Callable

from tfm.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_ITEMS_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    FatalError,
    Interrupted,
    TfmError,
)


class _State:
    command = "tfm"
    in_write = False
    pending_signal: int | None = None
    debug = bool(os.environ.get("TFM_DEBUG"))
    quiet = False
    records_done = 0


state = _State()


class BrokenPipe(Exception):
    """The reader of stdout went away (e.g. `| head -1`)."""


def _on_signal(signum, frame):
    if state.in_write:
        # Finish the record being written first; never leave half a line behind.
        state.pending_signal = signum
        return
    raise Interrupted(signum)


def protected_write(stream: BinaryIO, parts) -> None:
    """Write all parts and flush; a signal arriving meanwhile is honoured afterwards."""
    state.in_write = True
    try:
        for part in parts:
            stream.write(part)
        stream.flush()
    except OSError as e:
        if isinstance(e, BrokenPipeError) or e.errno in (errno.EPIPE, errno.EINVAL):
            raise BrokenPipe() from None
        raise
    finally:
        state.in_write = False
    if state.pending_signal is not None:
        signum, state.pending_signal = state.pending_signal, None
        raise Interrupted(signum)


def say(message: str) -> None:
    """One line on stderr, prefixed with the command's name."""
    try:
        sys.stderr.write(f"tfm {state.command}: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def error(message: str) -> None:
    say(f"error: {message}")


def warn(message: str) -> None:
    if not state.quiet:
        say(f"warning: {message}")


def _silence_stdout() -> None:
    # Python would complain at exit while flushing into the closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run(command: str, body: Callable[[], int], *, quiet: bool = False) -> int:
    """Run a command's body with tfm's error and signal rules; returns the exit status."""
    state.command = command
    state.quiet = quiet
    old_int = signal.signal(signal.SIGINT, _on_signal)
    old_term = signal.signal(signal.SIGTERM, _on_signal)
    try:
        return body() or EXIT_OK
    except Interrupted:
        say(f"interrupted after {state.records_done} records")
        return EXIT_INTERRUPTED
    except (BrokenPipe, BrokenPipeError):
        _silence_stdout()
        return EXIT_OK
    except TfmError as e:
        error(str(e))
        if state.debug:
            traceback.print_exc()
        return e.exit_code
    except MemoryError:
        error("out of memory")
        return EXIT_USAGE
    except Exception as e:  # a bug in tfm: say so in one line unless debugging
        if state.debug:
            traceback.print_exc()
        error(f"internal error: {type(e).__name__}: {e} (run with TFM_DEBUG=1 for a traceback)")
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


__all__ = [
    "EXIT_ITEMS_FAILED",
    "FatalError",
    "BrokenPipe",
    "protected_write",
    "run",
    "say",
    "error",
    "warn",
    "state",
]
