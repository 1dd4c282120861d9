"""Progress on stderr for long batch runs (only when stderr is a terminal), and the closing summary."""

from __future__ import annotations

import os
import sys
import time

from tfm.core import process


class Progress:
    def __init__(self, total: int | None, unit: str, quiet: bool = False):
        self.total, self.unit, self.quiet = total, unit, quiet
        self.start = time.monotonic()
        self.done = self.failed = 0
        self.last = 0.0
        self.live = (not quiet and sys.stderr is not None and sys.stderr.isatty()
                     and os.environ.get("TERM") != "dumb")

    def update(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed
        now = time.monotonic()
        if not self.live or now - self.last < 0.2:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        text = f"{done}"
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else 0
            width = 24
            filled = int(width * done / self.total)
            text = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}, ETA {eta:.0f} s"
        sys.stderr.write(f"\r{text}  {rate:.1f} {self.unit}/s, {failed} failed ")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.live:
            sys.stderr.write("\r\033[K")
        if not self.quiet:
            took = time.monotonic() - self.start
            rate = self.done / took if took > 0 else 0.0
            process.say(f"{self.done} {self.unit}, {self.failed} failed, {took:.1f} s ({rate:.1f} {self.unit}/s)")
