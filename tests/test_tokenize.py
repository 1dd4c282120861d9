"""tfm tokenize: WordPiece, BPE and Unigram tokenizer.json files, specials, pairs, lengths."""

from __future__ import annotations

import pytest

from conftest import FIXTURES, json_records, stderr_lines, tfm

TOKENIZERS = FIXTURES / "tokenizers"


def tok(*args, input: str):
    proc = tfm("tokenize", *args, input=input)
    return proc, json_records(proc.stdout)


def test_default_model_tokenizer_with_offsets():
    proc, [rec] = tok(input="A cat sits on the mat.\n")
    assert proc.returncode == 0 and proc.stderr == b""
    assert rec["tokens"] == ["[CLS]", "a", "cat", "sits", "on", "the", "mat", ".", "[SEP]"]
    assert rec["input_ids"][0] == 101 and rec["input_ids"][-1] == 102
    assert rec["special_tokens_mask"] == [1, 0, 0, 0, 0, 0, 0, 0, 1]
    text = rec["text"]
    assert [text[a:b] for a, b in rec["offsets"][1:-1]] == ["A", "cat", "sits", "on", "the", "mat", "."]
    assert rec["attention_mask"] == [1] * 9 and rec["token_type_ids"] == [0] * 9


def test_baked_in_padding_and_truncation_do_not_leak():
    # all-MiniLM-L6-v2's tokenizer.json pads and truncates to 128 unless told otherwise
    long = " ".join(["word"] * 300)
    _, [short, longrec] = tok(input=f"hi\n{long}\n")
    assert len(short["input_ids"]) == 3
    assert len(longrec["input_ids"]) == 302


@pytest.mark.parametrize("name, first, last", [
    ("wordpiece.json", "[CLS]", "[SEP]"),
    ("bpe.json", "<s>", "</s>"),
    ("unigram.json", None, "</s>"),
])
def test_any_tokenizer_json(name, first, last):
    proc, [rec] = tok("--tokenizer", TOKENIZERS / name, input="the cat sat on the mat\n")
    assert proc.returncode == 0, proc.stderr
    if first:
        assert rec["tokens"][0] == first
    assert rec["tokens"][-1] == last
    assert len(rec["tokens"]) == len(rec["input_ids"]) == len(rec["offsets"])
    back = tfm("tokenize", "--decode", "--no-special-tokens", "--tokenizer", TOKENIZERS / name,
               input=proc.stdout, check=True)
    assert json_records(back.stdout)[0]["text"].strip() == "the cat sat on the mat"


def test_no_special_tokens():
    _, [rec] = tok("--no-special-tokens", input="a cat\n")
    assert rec["tokens"] == ["a", "cat"] and rec["special_tokens_mask"] == [0, 0]


def test_sentence_pairs_from_tab_separated_lines_and_records():
    _, [a] = tok("--pair", input="How old are you?\tI am six.\n")
    assert a["text"] == "How old are you?" and a["text_pair"] == "I am six."
    assert a["tokens"].count("[SEP]") == 2
    sep = a["tokens"].index("[SEP]")
    assert set(a["token_type_ids"][: sep + 1]) == {0} and set(a["token_type_ids"][sep + 1:]) == {1}
    _, [b] = tok(input='{"text": "How old are you?", "text_pair": "I am six."}\n')
    assert b["input_ids"] == a["input_ids"] and b["token_type_ids"] == a["token_type_ids"]
    proc, [c] = tok("--pair", input="no tab here\n")
    assert proc.returncode == 1 and c["ok"] is False and "tab" in c["error"]["message"]


def test_max_length_truncate_and_pad_to():
    text = "one two three four five six seven eight\n"
    proc, [rec] = tok("--max-length", "5", input=text)
    assert proc.returncode == 1 and rec["error"]["kind"] == "too-long"
    assert "--truncate" in stderr_lines(proc)[0]
    _, [rec] = tok("--max-length", "5", "--truncate", input=text)
    assert rec["tokens"] == ["[CLS]", "one", "two", "three", "[SEP]"]
    _, [rec] = tok("--pad-to", "6", input="a cat\n")
    assert rec["tokens"] == ["[CLS]", "a", "cat", "[SEP]", "[PAD]", "[PAD]"]
    assert rec["attention_mask"] == [1, 1, 1, 1, 0, 0] and rec["input_ids"][-1] == 0
    proc = tfm("tokenize", "--truncate", input="x\n")
    assert proc.returncode == 2 and stderr_lines(proc) == ["tfm tokenize: error: --truncate needs --max-length"]


def test_any_script_and_unknown_characters_visible():
    _, [rec] = tok(input="我爱你 ☃ Ελλάδα привет\n")
    assert "[UNK]" in rec["tokens"]
    assert rec["tokens"][1] == "我"
    _, [rec] = tok("--tokenizer", TOKENIZERS / "bpe.json", input="我爱你\n")
    assert len(rec["input_ids"]) > 2  # byte-level BPE never needs an unknown token


def test_line_count_is_preserved_for_empty_and_blank_lines():
    proc, recs = tok(input="a\n\n   \nb\n")
    assert proc.returncode == 0 and len(recs) == 4
    assert recs[1]["tokens"] == ["[CLS]", "[SEP]"]


def test_text_option_and_files(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("first\nsecond\n")
    proc = tfm("tokenize", f, "-", input="third\n", check=True)
    assert [r["text"] for r in json_records(proc.stdout)] == ["first", "second", "third"]
    proc = tfm("tokenize", "-t", "hello there", check=True)
    assert json_records(proc.stdout)[0]["tokens"] == ["[CLS]", "hello", "there", "[SEP]"]


def test_garbage_tokenizer_json_is_fatal(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": 42}')
    proc = tfm("tokenize", "--tokenizer", bad, input="x\n")
    assert proc.returncode == 2 and proc.stdout == b""
    [line] = stderr_lines(proc)
    assert line.startswith("tfm tokenize: error:") and "tokenizer.json" in line


def test_ten_megabyte_line_is_refused_quickly():
    proc = tfm("tokenize", input="x" * (10 << 20) + "\nok\n", timeout=30)
    recs = json_records(proc.stdout)
    assert proc.returncode == 1 and recs[0]["error"]["kind"] == "too-long" and recs[1]["text"] == "ok"


def test_decode_needs_ids():
    proc, [rec] = tok("--decode", input='{"text": "x"}\n')
    assert proc.returncode == 1 and "input_ids" in rec["error"]["message"] and "tfm tokenize" in rec["error"]["message"]
