"""The record stream layer: formats, round trips, and hostile input (bad-inputs 7-13)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from conftest import json_records, npy_records, stderr_lines, tfm
from tfm.core import stream
from tfm.core.stream import RecordWriter, encode_json, encode_npy, read_records


def roundtrip_npy(fields: dict) -> dict:
    data = b"".join(bytes(p) for p in encode_npy(fields))
    [rec] = list(read_records([(io.BytesIO(data), "-")]))
    return rec.fields


def read_bytes(data: bytes, accept_text: bool = False):
    return list(read_records([(io.BufferedReader(io.BytesIO(data)), "-")], accept_text=accept_text))


def test_json_to_npy_to_json_is_lossless():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    x[0, 0] = np.float32(1e-38)  # subnormal edge
    x[0, 1] = np.float32(3.4028235e38)
    x[0, 2] = -0.0
    x[0, 3] = 1.0  # integral float must stay float
    line = encode_json({"id": "a", "x": x, "ids": np.arange(4, dtype=np.int64), "n": 3, "tags": ["p", "q"]})
    [rec] = read_bytes(line)
    assert list(rec.fields) == ["id", "x", "ids", "n", "tags"]
    assert rec.fields["x"].dtype == np.float32 and np.array_equal(rec.fields["x"], x)
    assert np.signbit(rec.fields["x"][0, 2])
    assert rec.fields["ids"].dtype == np.int64
    back = roundtrip_npy(rec.fields)
    assert list(back) == list(rec.fields)
    assert encode_json(back) == line


def test_integer_dtypes_survive_npy():
    fields = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "b": np.array([1, 2], dtype=np.uint8),
              "c": np.ones((2, 2), np.float16)}
    back = roundtrip_npy(fields)
    for k in fields:
        assert back[k].dtype == fields[k].dtype and np.array_equal(back[k], fields[k])


def test_npy_stream_is_readable_with_plain_numpy():
    fields = {"text": "héllo", "v": np.linspace(0, 1, 5, dtype=np.float32)}
    data = b"".join(bytes(p) for p in encode_npy(fields)) * 2
    recs = npy_records(data)
    assert len(recs) == 2 and recs[1]["text"] == "héllo"
    assert np.array_equal(recs[0]["v"], fields["v"])


def test_bare_npy_array_is_a_record(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.eye(3, dtype=np.float32))
    np.save(buf, np.arange(4))
    recs = read_bytes(buf.getvalue())
    assert [r.bare for r in recs] == [True, True]
    assert np.array_equal(recs[0].fields["array"], np.eye(3))


def test_plain_text_needs_a_text_command():
    [rec] = read_bytes(b"hello\n")
    assert rec.error and "tfm tokenize" in rec.error["message"]
    [rec] = read_bytes(b"hello\n", accept_text=True)
    assert rec.fields == {"text": "hello"}


def test_bom_crlf_and_blank_lines_in_text():
    recs = read_bytes(b"\xef\xbb\xbfone\r\n\r\n   \r\ntwo\r\n", accept_text=True)
    assert [r.fields["text"] for r in recs] == ["one", "", "   ", "two"]


def test_json_hostile_values_are_refused():
    lines = [
        b'{"a": NaN}',
        b'{"a": 1, "a": 2}',
        b'{"a": ' + b"9" * 5000 + b"}",
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a": [1e300]}',
        b"[1, 2]",
        b"{broken",
        b"   ",
        b'{"a": [9999999999999999999, 5]}',
        b'{"ok": 1}',
    ]
    recs = read_bytes(b"\n".join(lines) + b"\n")
    assert len(recs) == len(lines)
    kinds = [r.error["kind"] if r.error else None for r in recs]
    assert kinds[:9] == ["bad-json"] * 4 + ["bad-value"] + ["bad-json"] * 4
    assert "duplicate key" in recs[1].error["message"]
    assert "int64 range" in recs[8].error["message"]
    assert kinds[9] is None
    assert [r.where for r in recs[:3]] == ["line 1", "line 2", "line 3"]


def test_overlong_line_is_refused_and_reading_goes_on(monkeypatch):
    monkeypatch.setattr(stream, "MAX_RECORD_BYTES", 1000)
    data = b'{"a": 1}\n' + b'{"b": "' + b"x" * 5000 + b'"}\n{"c": 2}\n'
    recs = read_bytes(data)
    assert recs[0].fields == {"a": 1}
    assert recs[1].error["kind"] == "too-long"
    assert recs[2].fields == {"c": 2}


def test_invalid_utf8_is_one_bad_record():
    recs = read_bytes(b'{"a": 1}\n{"b": "\xff\xfe"}\n{"c": 3}\n')
    assert [bool(r.error) for r in recs] == [False, True, False]
    assert "UTF-8" in recs[1].error["message"]


def npy_with_header(header: str, payload: bytes = b"") -> bytes:
    head = header.encode("latin1")
    pad = 64 - (10 + len(head) + 1) % 64
    head = head + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + payload


@pytest.mark.parametrize("header, kind", [
    ("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}", "object dtype"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (10**14,)}", "invalid"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (100000000000000,)}", "over the limit"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "invalid"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,", "invalid"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': ()[0]}", "invalid"),
    ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", "not a numeric"),
    ("{'descr': '<f99999999999999999999', 'fortran_order': False, 'shape': (1,)}", "invalid"),
])
def test_hostile_npy_headers(header, kind):
    [rec] = read_bytes(npy_with_header(header, b"\0" * 64))
    assert rec.error is not None and kind in rec.error["message"]


def test_truncated_last_npy_record_keeps_earlier_ones():
    good = b"".join(bytes(p) for p in encode_npy({"v": np.arange(100, dtype=np.float32)}))
    recs = read_bytes(good + good + good[:-50])
    assert [r.error is None for r in recs] == [True, True, False]
    assert "truncated" in recs[2].error["message"]


def test_writer_refuses_nan():
    from tfm.core.errors import ItemError

    with pytest.raises(ItemError):
        stream.check_finite({"x": np.array([1.0, np.nan], np.float32)})


def test_writer_writes_whole_records():
    out = io.BytesIO()
    w = RecordWriter(out, "json")
    w.write({"a": np.array([0.5], np.float32)})
    assert out.getvalue() == b'{"a":[0.5]}\n'


# --- through the real CLI -------------------------------------------------------------


def test_empty_stdin_is_an_empty_result(wordpiece):
    proc = tfm("tokenize", "--tokenizer", wordpiece, input=b"")
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b""


def test_malformed_line_in_the_middle(wordpiece):
    data = '{"text": "one"}\n{"text": broken\n\n{"text": "three"}\n'
    proc = tfm("tokenize", "--tokenizer", wordpiece, input=data)
    assert proc.returncode == 1
    recs = json_records(proc.stdout)
    assert [r.get("ok", True) for r in recs] == [True, False, False, True]
    assert recs[1]["error"]["kind"] == "bad-json" and recs[1]["record"] == 2
    errs = stderr_lines(proc)
    assert len(errs) == 2 and errs[0].startswith("tfm tokenize: error: line 2: malformed JSON")
    assert "Traceback" not in proc.stderr.decode()


def test_fail_fast_stops_at_the_first_bad_record(wordpiece):
    data = '{"text": "one"}\n{"text": broken\n{"text": "three"}\n'
    proc = tfm("tokenize", "--tokenizer", wordpiece, "--fail-fast", input=data)
    assert proc.returncode == 1
    assert len(json_records(proc.stdout)) == 2


def test_object_npy_through_cli_never_unpickles(wordpiece, tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    proc = tfm("encode", input=buf.getvalue())
    assert proc.returncode == 1
    assert "object dtype" in proc.stderr.decode()


def test_json_npy_json_through_pipes(wordpiece):
    a = tfm("tokenize", "--tokenizer", wordpiece, input="the cat\nsat down\n", check=True).stdout
    b = tfm("tokenize", "--decode", "--tokenizer", wordpiece, "-f", "npy", input=a, check=True).stdout
    c = tfm("tokenize", "--decode", "--tokenizer", wordpiece, input=b, check=True).stdout
    assert [r["input_ids"] for r in json_records(c)] == [r["input_ids"] for r in json_records(a)]
    assert json.loads(c.splitlines()[0])["text"] == "[CLS] the cat [SEP]"
