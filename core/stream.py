"""Record streams: the one I/O layer every tfm command reads and writes.

A *record* is one item (a sentence, an image) with named fields: metadata
(strings, numbers, lists) and tensors (numpy arrays).  On the wire a stream is
either

* JSON Lines: one JSON object per line; a tensor is a nested list of numbers.
  On reading, a rectangular list of numbers becomes a tensor: int64 when every
  number is an integer literal, float32 as soon as one has a fraction or an
  exponent.  Floats are written as the shortest text that reads back to the same
  float32, so JSON -> NumPy -> JSON loses nothing; or
* NumPy: for each record, a 1-D uint8 ``.npy`` array holding a UTF-8 JSON header
  ``{"tfm": 1, "fields": [...], "tensors": [...], "meta": {...}}`` followed by
  one standard ``.npy`` array per name in ``tensors``.  Plain
  ``numpy.lib.format.read_array`` reads it; a bare array written by ``np.save``
  is accepted as a record with the single tensor field ``array``.

Plain text lines (for commands that take text) become ``{"text": line}``.
The format of the input is detected from its first bytes; see tfm-stream(5).
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import tokenize as _pytokenize
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import numpy as np
from numpy.lib import format as npformat

from tfm.core.errors import ItemError, StreamError
from tfm.core.process import protected_write
from tfm.core.process import state as process_state

NPY_MAGIC = b"\x93NUMPY"
HEADER_KEY = "tfm"

# Limits protect against hostile input; each can be raised by an environment
# variable for the rare legitimate case.
MAX_RECORD_BYTES = int(os.environ.get("TFM_MAX_RECORD_BYTES", 32 << 20))
MAX_TEXT_BYTES = int(os.environ.get("TFM_MAX_TEXT_BYTES", 1 << 20))
MAX_TENSOR_BYTES = int(os.environ.get("TFM_MAX_TENSOR_BYTES", 1 << 30))
MAX_INT_DIGITS = 19  # anything longer cannot be an int64
MAX_JSON_DEPTH = 32


@dataclass
class Record:
    """One item of a stream.

    ``where`` says where it came from ("line 3", "data.npy record 2") for error
    messages; ``index`` is its 1-based position in the whole input.  An error
    record (one that failed upstream, or could not be read) has ``error`` set to
    ``{"kind": ..., "message": ...}`` and is passed through untouched.
    """

    fields: dict[str, Any]
    where: str
    index: int
    error: dict | None = None
    bare: bool = False  # a bare .npy array, not a tfm record
    text: bool = False  # a plain text line, not a JSON record
    data: Any = None  # work done before the record reached the stage (a decoded image); never written
    upstream: bool = False  # an error record that an earlier command wrote (and reported)


def error_record(index: int, kind: str, message: str, keep: dict | None = None) -> dict:
    """The output record for a failed item: identifying fields kept, then the error."""
    out: dict[str, Any] = {}
    for name in ("path", "id", "text"):
        if keep and name in keep and isinstance(keep[name], str):
            out[name] = keep[name]
    out["record"] = index
    out["ok"] = False
    out["error"] = {"kind": kind, "message": message}
    return out


# --------------------------------------------------------------------------- reading


class _Source:
    """One input: a named binary stream."""

    def __init__(self, stream: BinaryIO, name: str):
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(stream)  # type: ignore[arg-type]
        self.stream = stream
        self.name = name

    def where(self, unit: str, n: int) -> str:
        return f"{unit} {n}" if self.name == "-" else f"{self.name} {unit} {n}"


def read_records(
    sources: list[tuple[BinaryIO, str]], *, accept_text: bool = False
) -> Iterator[Record]:
    """Records from each source in turn; format detected per source."""
    index = 0
    for stream, name in sources:
        src = _Source(stream, name)
        head = src.stream.peek(1)[:1]
        reader = _read_npy_records if head == NPY_MAGIC[:1] else _read_line_records
        for rec in reader(src, accept_text):
            index += 1
            rec.index = index
            yield rec


def _read_line_records(src: _Source, accept_text: bool) -> Iterator[Record]:
    mode: str | None = None  # "json" or "text", decided by the first non-blank line
    pending: list[tuple[int, bytes | None]] = []
    for lineno, raw in _lines(src.stream):
        if mode is None:
            if raw is not None and raw.strip() == b"":
                pending.append((lineno, raw))
                continue
            mode = "json" if raw is not None and raw.lstrip().startswith(b"{") else "text"
            for n, r in pending:
                yield _line_record(src, n, r, mode, accept_text)
            pending = []
        yield _line_record(src, lineno, raw, mode, accept_text)
    for n, r in pending:  # input was blank lines only
        yield _line_record(src, n, r, "text", accept_text)


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its end) pairs; None for a line over the limit."""
    lineno = 0
    while True:
        line = stream.readline(MAX_RECORD_BYTES + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):
            while True:  # skip the rest of the monster line without keeping it
                chunk = stream.readline(1 << 20)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield lineno, None
            continue
        if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        yield lineno, line


def _line_record(src: _Source, lineno: int, raw: bytes | None, mode: str, accept_text: bool) -> Record:
    where = src.where("line", lineno)
    try:
        if raw is None:
            raise ItemError(
                f"line longer than {MAX_RECORD_BYTES} bytes (TFM_MAX_RECORD_BYTES); "
                "use the NumPy format (--format npy) for large tensors",
                "too-long",
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ItemError(f"invalid UTF-8 at byte {e.start}", "bad-encoding") from None
        if mode == "text":
            if not accept_text:
                raise ItemError(
                    "expected a JSON record, got plain text (pipe text through `tfm tokenize` first)",
                    "bad-json",
                )
            if len(raw) > MAX_TEXT_BYTES:
                raise ItemError(
                    f"text of {len(raw)} bytes is over the limit of {MAX_TEXT_BYTES} (TFM_MAX_TEXT_BYTES)",
                    "too-long",
                )
            return Record({"text": text}, where, 0, text=True)
        if not text.strip():
            raise ItemError("empty line where a JSON record was expected", "bad-json")
        fields = parse_json_record(text)
    except ItemError as e:
        return Record({}, where, 0, error={"kind": e.kind, "message": str(e)})
    err = fields.get("error") if fields.get("ok") is False else None
    if isinstance(err, dict):
        return Record(fields, where, 0, error=err, upstream=True)
    return Record(fields, where, 0)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer with {len(digits)} digits is out of range")
    value = int(digits)
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"integer {digits} is out of the int64 range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json_record(text: str) -> dict[str, Any]:
    """A JSON object with its numeric arrays turned into tensors."""
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
        )
    except RecursionError:
        raise ItemError("JSON nested too deeply", "bad-json") from None
    except ValueError as e:
        raise ItemError(f"malformed JSON: {e}", "bad-json") from None
    if not isinstance(obj, dict):
        raise ItemError(f"expected a JSON object, got {type(obj).__name__}", "bad-json")
    return {key: _to_tensor(key, value) for key, value in obj.items()}


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth += 1
        value = value[0]
    return depth


def _to_tensor(name: str, value: Any) -> Any:
    """A rectangular list of numbers becomes an int64 or float32 array; anything else stays."""
    if not isinstance(value, list) or not value:
        return value
    if _depth(value) > MAX_JSON_DEPTH:
        raise ItemError(f"field {name!r} is nested more than {MAX_JSON_DEPTH} levels deep", "bad-json")
    try:
        arr = np.array(value)
    except (ValueError, OverflowError, TypeError):
        return value  # ragged or mixed: metadata
    if arr.dtype.kind == "i" or arr.dtype.kind == "u":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore"):
            out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ItemError(f"field {name!r} holds a value outside the float32 range", "bad-value")
        return out
    return value  # strings, booleans, objects


def _read_exact(stream: BinaryIO, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not k:
            break
        got += k
    return buf[:got] if got < n else buf


def read_npy(stream: BinaryIO, what: str) -> np.ndarray | None:
    """One .npy array from a stream, or None at a clean end of stream.

    The header is checked before anything is allocated: object dtypes are never
    unpickled and sizes over TFM_MAX_TENSOR_BYTES are refused.
    """
    magic = _read_exact(stream, 6)
    if not magic:
        return None
    if bytes(magic) != NPY_MAGIC:
        raise StreamError(f"{what}: not a .npy array (bad magic)", "bad-npy")
    version = _read_exact(stream, 2)
    if len(version) < 2 or version[0] not in (1, 2, 3):
        raise StreamError(f"{what}: unsupported .npy version", "bad-npy")
    size_len = 2 if version[0] == 1 else 4
    raw_len = _read_exact(stream, size_len)
    if len(raw_len) < size_len:
        raise StreamError(f"{what}: truncated .npy header", "truncated")
    header_len = int.from_bytes(raw_len, "little")
    if header_len > 1 << 16:
        raise StreamError(f"{what}: invalid .npy header ({header_len} bytes)", "bad-npy")
    header = _read_exact(stream, header_len)
    if len(header) < header_len:
        raise StreamError(f"{what}: truncated .npy header", "truncated")
    shape, fortran, dtype = _parse_npy_header(bytes(header), version[0], what)
    count = 1
    for dim in shape:
        count *= dim
    nbytes = count * dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise StreamError(
            f"{what}: array of shape {shape} would need {nbytes:,} bytes, over the limit of "
            f"{MAX_TENSOR_BYTES:,} (TFM_MAX_TENSOR_BYTES)",
            "too-large",
        )
    data = _read_exact(stream, nbytes)
    if len(data) < nbytes:
        raise StreamError(f"{what}: truncated .npy data ({len(data)} of {nbytes} bytes)", "truncated")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


_SIMPLE_HEADER = re.compile(
    r"\{'descr': '([<>|=]?[biuf][1248])', 'fortran_order': (False|True), 'shape': \(((?:\d+, ?)*\d*)\), \}\s*\Z")


def _parse_npy_header(header: bytes, version: int, what: str):
    text = header.decode("utf-8" if version == 3 else "latin1", "replace")
    fast = _SIMPLE_HEADER.match(text)
    if fast:  # the layout numpy itself writes: no need for the general parser
        descr, fortran, dims = fast.groups()
        shape = tuple(int(x) for x in dims.replace(" ", "").split(",") if x)
        return shape, fortran == "True", np.dtype(descr)
    try:
        d = ast.literal_eval(text)
        if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
            raise ValueError("header keys")
        shape = d["shape"]
        if not isinstance(shape, tuple) or not all(isinstance(x, int) and x >= 0 for x in shape):
            raise ValueError("shape")
        if not isinstance(d["fortran_order"], bool):
            raise ValueError("fortran_order")
        dtype = npformat.descr_to_dtype(d["descr"])
    except (ValueError, SyntaxError, TypeError, OverflowError, IndexError, KeyError,
            MemoryError, RecursionError, _pytokenize.TokenError):
        raise StreamError(f"{what}: invalid .npy header", "bad-npy") from None
    if dtype.hasobject:
        raise StreamError(f"{what}: .npy array of object dtype refused (it would need unpickling)", "bad-npy")
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise StreamError(f"{what}: .npy dtype {dtype} is not a numeric array", "bad-npy")
    return shape, d["fortran_order"], dtype


def _read_npy_records(src: _Source, accept_text: bool) -> Iterator[Record]:
    n = 0
    while True:
        n += 1
        where = src.where("record", n)
        try:
            first = read_npy(src.stream, where)
            if first is None:
                return
            header = _tfm_header(first)
            if header is None:
                yield Record({"array": np.array(first)}, where, 0, bare=True)
                continue
            fields = dict(header.get("meta", {}))
            for name in header["tensors"]:
                arr = read_npy(src.stream, f"{where} field {name!r}")
                if arr is None:
                    raise StreamError(f"{where}: truncated record (field {name!r} missing)", "truncated")
                fields[name] = arr
            order = header.get("fields") or list(fields)
            fields = {k: fields[k] for k in order if k in fields}
        except StreamError as e:
            yield Record({}, where, 0, error={"kind": e.kind, "message": str(e)})
            return  # framing is lost: nothing after this can be trusted
        err = fields.get("error") if fields.get("ok") is False else None
        upstream = isinstance(err, dict)
        yield Record(fields, where, 0, error=err if upstream else None, upstream=upstream)


def _tfm_header(arr: np.ndarray) -> dict | None:
    if arr.dtype != np.uint8 or arr.ndim != 1 or not arr[:7].tobytes().startswith(b'{"tfm"'):
        return None
    try:
        header = json.loads(arr.tobytes().decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
        return None
    return header


# --------------------------------------------------------------------------- writing


def _json_default(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def check_finite(fields: dict[str, Any]) -> None:
    """A NaN or Inf is never written silently: the item fails instead."""
    for name, value in fields.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ItemError(f"field {name!r} contains NaN or Inf", "non-finite")


def _contiguous(arr: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray would turn a 0-d array into shape (1,)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def encode_json(fields: dict[str, Any]) -> bytes:
    import orjson

    clean = {}
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            if value.dtype == np.float16:
                value = value.astype(np.float32)
            value = _contiguous(value)
            if value.ndim == 0:
                value = value.item()
        clean[name] = value
    return orjson.dumps(
        clean,
        default=_json_default,
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE,
    )


def encode_npy(fields: dict[str, Any]) -> list[bytes | memoryview]:
    """The parts of one framed record: header array, then each tensor array."""
    tensors = [k for k, v in fields.items() if isinstance(v, np.ndarray)]
    meta = {k: v for k, v in fields.items() if not isinstance(v, np.ndarray)}
    header = {"tfm": 1, "fields": list(fields), "tensors": tensors, "meta": meta}
    import orjson

    blob = np.frombuffer(orjson.dumps(header, default=_json_default), dtype=np.uint8)
    parts: list[bytes | memoryview] = []
    small = bytearray()  # headers and small arrays go out in one write
    for arr in [blob] + [fields[k] for k in tensors]:
        arr = _contiguous(arr)
        small += _npy_header(arr)
        if arr.nbytes < 1 << 16:
            small += arr.tobytes()
        else:
            parts += [bytes(small), memoryview(arr).cast("B")]
            small = bytearray()
    if small:
        parts.append(bytes(small))
    return parts


def _npy_header(arr: np.ndarray) -> bytes:
    """A version 1.0 .npy header, as numpy.lib.format writes it."""
    shape = repr(tuple(int(d) for d in arr.shape))
    text = f"{{'descr': '{npformat.dtype_to_descr(arr.dtype)}', 'fortran_order': False, 'shape': {shape}, }}"
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * (pad % 64) + "\n"
    return NPY_MAGIC + b"\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


FORMATS = ("json", "npy")


class RecordWriter:
    """Writes whole records and flushes each one; a record is never half-written.

    ``csv`` (for commands whose records are flat, such as classify) needs
    ``columns`` and a ``row`` function turning a record into those cells;
    ``text`` needs a ``row`` function giving the one line for a record.
    """

    def __init__(self, stream: BinaryIO, fmt: str = "json", columns: list[str] | None = None, row=None,
                 header: bool = True):
        if fmt not in FORMATS + ("csv", "text"):
            raise ValueError(fmt)
        self.stream = stream
        self.fmt = fmt
        self.columns, self.row = columns, row
        if fmt == "csv" and header:
            protected_write(self.stream, [self._csv_line(columns or [])])

    @staticmethod
    def _csv_line(cells: list) -> bytes:
        import csv

        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(["" if c is None else c for c in cells])
        return buf.getvalue().encode("utf-8")

    def encode(self, fields: dict[str, Any]) -> list[bytes | memoryview]:
        if self.fmt == "json":
            return [encode_json(fields)]
        if self.fmt == "csv":
            return [self._csv_line(self.row(fields))]
        if self.fmt == "text":  # one line per record, so line N of the output belongs to line N of the input
            return [" ".join(str(self.row(fields)).splitlines()).encode("utf-8") + b"\n"]
        return encode_npy(fields)

    def write(self, fields: dict[str, Any]) -> None:
        parts = self.encode(fields)
        protected_write(self.stream, parts)
        process_state.records_done += 1
