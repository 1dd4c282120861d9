"""The record loop shared by every command: read, batch, compute, write in order.

A command supplies a :class:`Stage`: ``prepare`` checks one record (cheap, and
the place for per-item errors), ``run`` computes a batch of prepared items.
This module does the rest: reading ahead on a thread so parsing overlaps with
compute, bounded batches (memory stays flat on an endless stream), a batch that
is cut short when input pauses (so `tail -f | tfm ...` answers at once),
error records in place of failed items, and the exit status.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator, Protocol

from tfm.core import process
from tfm.core.errors import EXIT_ITEMS_FAILED, EXIT_OK, ItemError
from tfm.core.stream import Record, RecordWriter, check_finite, error_record


class Stage(Protocol):
    def prepare(self, record: Record) -> Any: ...

    def run(self, items: list[Any]) -> list[dict | ItemError]: ...


_END = object()


class _ReadAhead:
    """Pulls records from an iterator on a thread into a bounded queue."""

    def __init__(self, records: Iterable[Record], maxsize: int):
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._pump, args=(iter(records),), daemon=True)
        self.thread.start()
        self.done = False

    def _pump(self, it: Iterator[Record]) -> None:
        try:
            for rec in it:
                self.queue.put(rec)
        except BaseException as e:  # surfaced in the main thread
            self.failure = e
        self.queue.put(_END)

    def batch(self, size: int) -> list[Record]:
        """Up to ``size`` records: waits for the first, then takes what is ready."""
        if self.done:
            return []
        out: list[Record] = []
        item = self.queue.get()
        while True:
            if item is _END:
                self.done = True
                if self.failure is not None:
                    raise self.failure
                break
            out.append(item)
            if len(out) >= size:
                break
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
        return out


def run_stage(
    records: Iterable[Record],
    stage: Stage,
    writer: RecordWriter,
    *,
    batch_size: int = 32,
    fail_fast: bool = False,
    progress=None,
) -> int:
    """Map every record through ``stage`` and write the results in input order."""
    done = failed_count = 0
    reader = _ReadAhead(records, maxsize=max(4 * batch_size, 64))
    while True:
        batch = reader.batch(batch_size)
        if not batch:
            break
        slots: list[dict | None] = [None] * len(batch)
        ready: list[tuple[int, Any]] = []
        for i, rec in enumerate(batch):
            if rec.error is not None:
                if rec.upstream:  # failed in an earlier command, which reported it: pass it on
                    slots[i] = rec.fields
                else:  # unreadable here: report it
                    slots[i] = _failure(rec, ItemError(rec.error["message"], rec.error["kind"]))
                continue
            try:
                ready.append((i, stage.prepare(rec)))
            except ItemError as e:
                slots[i] = _failure(rec, e)
        for i, out in _compute(stage, batch, ready):
            slots[i] = _failure(batch[i], out) if isinstance(out, ItemError) else out
        for rec, out in zip(batch, slots):
            assert out is not None
            failed = out.get("ok") is False
            if not failed:
                try:
                    check_finite(out)
                except ItemError as e:
                    out, failed = _failure(rec, e), True
            writer.write(out)
            done += 1
            failed_count += failed
            if progress is not None:
                progress.update(done, failed_count)
            if failed and fail_fast:
                return EXIT_ITEMS_FAILED
    return EXIT_ITEMS_FAILED if failed_count else EXIT_OK


def _failure(rec: Record, e: ItemError) -> dict:
    message = str(e) if str(e).startswith(rec.where) else f"{rec.where}: {e}"
    process.error(message)
    return error_record(rec.index, e.kind, message, rec.fields)


def _compute(stage: Stage, batch: list[Record], ready: list[tuple[int, Any]]):
    """Results of a batch; if the batch fails, each item alone, so only the bad one fails."""
    if not ready:
        return []
    items = [item for _, item in ready]
    try:
        outs = stage.run(items)
        return [(i, out) for (i, _), out in zip(ready, outs)]
    except ItemError as e:
        if len(ready) == 1:
            return [(ready[0][0], _failure(batch[ready[0][0]], e))]
    results = []
    for i, item in ready:
        try:
            results.append((i, stage.run([item])[0]))
        except ItemError as e:
            results.append((i, _failure(batch[i], e)))
    return results
