"""tfm encode on the embedded model and on a tiny BertModel export: numbers, batching, pipes, bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import FIXTURES, TFM, json_records, npy_records, stderr_lines, tfm
from tfm.core.encode import EncodeStage
from tfm.core.engine import Engine
from tfm.core.modeldir import resolve
from tfm.core.stream import Record


def encode(model: str | None, texts: list[str], batch: bool = True, **kw) -> list[dict]:
    stage = EncodeStage(resolve(model), Engine("cpu", 2), **kw)
    items = [stage.prepare(Record({"text": t}, f"line {i}", i)) for i, t in enumerate(texts)]
    if batch:
        return stage.run(items)
    return [stage.run([it])[0] for it in items]


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_embedded_model_matches_the_fp32_export(minilm_ref):
    """fp16-stored weights: within cosine 0.9999 of the fp32 export, token by token and pooled."""
    sentences = [str(s) for s in minilm_ref["sentences"]]
    out = encode(None, sentences, pool="mean")
    worst = 1.0
    for i, rec in enumerate(out):
        n = int(minilm_ref["attention_mask"][i].sum())
        assert rec["input_ids"].tolist() == minilm_ref["input_ids"][i, :n].tolist()
        ref = minilm_ref["last_hidden_state"][i, :n]
        for t in range(n):
            worst = min(worst, cosine(rec["last_hidden_state"][t], ref[t]))
        assert cosine(rec["sentence_embedding"], minilm_ref["mean_pooled"][i]) >= 0.9999
    assert worst >= 0.9999, worst


def test_embedded_model_equals_plain_onnxruntime(minilm_ref):
    """tfm's encode is the model run directly with onnxruntime (same graph, 1e-5)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(resolve(None).onnx()), providers=["CPUExecutionProvider"])
    ids, mask = minilm_ref["input_ids"], minilm_ref["attention_mask"]
    direct = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
    out = encode(None, [str(s) for s in minilm_ref["sentences"]])
    for i, rec in enumerate(out):
        n = int(mask[i].sum())
        np.testing.assert_allclose(rec["last_hidden_state"], direct[i, :n], atol=1e-5)


def test_sentence_similarity_makes_sense():
    a, b, c = (r["sentence_embedding"] for r in encode(
        None, ["a cat sits on the mat", "a kitten rests on a rug", "stock prices fell sharply"],
        pool="mean", normalize=True))
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-6)
    assert a @ b > 0.5 > 0.2 > a @ c


def test_batched_equals_one_at_a_time():
    texts = ["short", "a somewhat longer sentence with more words in it", "mid length one here", "x " * 40]
    together = encode(None, texts, pool="mean")
    alone = encode(None, texts, batch=False, pool="mean")
    for a, b in zip(together, alone):
        assert a["last_hidden_state"].shape == b["last_hidden_state"].shape
        np.testing.assert_allclose(a["last_hidden_state"], b["last_hidden_state"], atol=1e-5)
        np.testing.assert_allclose(a["sentence_embedding"], b["sentence_embedding"], atol=1e-5)


def test_tiny_bert_export_matches_torch(tiny_bert):
    ref = np.load(FIXTURES / "tiny-bert" / "reference.npz")
    out = encode(tiny_bert, [str(t) for t in ref["texts"]])
    for i, rec in enumerate(out):
        n = int(ref["attention_mask"][i].sum())
        assert rec["input_ids"].tolist() == ref["input_ids"][i, :n].tolist()
        np.testing.assert_allclose(rec["last_hidden_state"], ref["last_hidden_state"][i, :n], atol=1e-5)


def test_tiny_bert_sentence_pair_matches_torch(tiny_bert):
    ref = np.load(FIXTURES / "tiny-bert" / "reference.npz")
    a, b = (str(t) for t in ref["pair_texts"])
    proc = tfm("encode", "--model", tiny_bert,
               input=f'{{"text": "{a}", "text_pair": "{b}"}}\n', check=True)
    [rec] = json_records(proc.stdout)
    assert rec["token_type_ids"] == ref["pair_token_type_ids"][0].tolist()
    np.testing.assert_allclose(np.array(rec["last_hidden_state"]), ref["pair_last_hidden_state"][0], atol=1e-5)


def test_onnx_subfolder_layout(tmp_path):
    """Repositories that publish ONNX exports keep the graph in onnx/model.onnx."""
    a = encode(str(FIXTURES / "tiny-bert"), ["the cat"])[0]["last_hidden_state"]
    b = encode(str(FIXTURES / "tiny-bert-onnx-subdir"), ["the cat"])[0]["last_hidden_state"]
    np.testing.assert_array_equal(a, b)


def test_pools():
    [rec] = encode(None, ["a cat sits"], pool="max")
    np.testing.assert_array_equal(rec["sentence_embedding"], rec["last_hidden_state"].max(0))
    [rec] = encode(None, ["a cat sits"], pool="cls")
    np.testing.assert_array_equal(rec["sentence_embedding"], rec["last_hidden_state"][0])


def test_mean_pool_respects_the_records_own_padding():
    padded = tfm("tokenize", "--pad-to", "12", input="a cat sits\n", check=True).stdout
    plain = tfm("tokenize", input="a cat sits\n", check=True).stdout
    [p] = json_records(tfm("encode", "--pool", "mean", input=padded, check=True).stdout)
    [q] = json_records(tfm("encode", "--pool", "mean", input=plain, check=True).stdout)
    assert len(p["last_hidden_state"]) == 12
    np.testing.assert_allclose(p["sentence_embedding"], q["sentence_embedding"], atol=1e-5)


# --- pipes through real processes ----------------------------------------------------------


def test_tokenize_encode_pipe_text_and_binary_modes_agree():
    text = "A cat sits on the mat.\nStock prices fell sharply.\n"
    j_tok = tfm("tokenize", input=text, check=True).stdout
    j = json_records(tfm("encode", "--pool", "mean", input=j_tok, check=True).stdout)
    b_tok = tfm("tokenize", "-f", "npy", input=text, check=True).stdout
    b = npy_records(tfm("encode", "--pool", "mean", "-f", "npy", input=b_tok, check=True).stdout)
    assert len(j) == len(b) == 2
    for x, y in zip(j, b):
        assert x["tokens"] == y["tokens"]
        assert y["last_hidden_state"].dtype == np.float32 and y["input_ids"].dtype == np.int64
        np.testing.assert_array_equal(np.array(x["last_hidden_state"], np.float32), y["last_hidden_state"])
        np.testing.assert_array_equal(np.array(x["sentence_embedding"], np.float32), y["sentence_embedding"])


def test_head_closes_the_pipe_quietly(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a sentence to encode\n" * 400)
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {' '.join(TFM)} encode {src} | head -c 100 >/dev/null"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""


def test_sigterm_mid_run_exits_130_with_whole_lines(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a sentence to encode, again and again\n" * 5000)
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "TFM_THREADS": "1"}
    p = subprocess.Popen(TFM + ["encode", str(src), "-o", str(out), "--batch-size", "8"], stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 50_000):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfm encode: interrupted after")
    data = out.read_bytes()
    assert data.endswith(b"\n")
    assert len(json_records(data)) >= 1


# --- bad input (bad-inputs.md 14, 16, 19, 20) ------------------------------------------------


def test_missing_field_names_the_maker():
    proc = tfm("encode", input='{"tokens": ["a"]}\n')
    assert proc.returncode == 1
    [rec] = json_records(proc.stdout)
    assert rec["error"]["kind"] == "missing-field"
    assert "input_ids" in rec["error"]["message"] and "tfm tokenize" in rec["error"]["message"]


def test_too_long_for_the_model_offers_truncate(tiny_bert):
    long = " ".join(["cat"] * 100)
    proc = tfm("encode", "--model", tiny_bert, input=f"{long}\nthe cat\n")
    recs = json_records(proc.stdout)
    assert proc.returncode == 1 and recs[0]["error"]["kind"] == "too-long" and "ok" not in recs[1]
    assert "max_position_embeddings 64" in recs[0]["error"]["message"] and "--truncate" in recs[0]["error"]["message"]
    proc = tfm("encode", "--model", tiny_bert, "--truncate", input=f"{long}\n", check=True)
    [rec] = json_records(proc.stdout)
    assert len(rec["last_hidden_state"]) == 64 and rec["tokens"][-1] == "[SEP]"
    tokens = tfm("tokenize", "--model", tiny_bert, input=f"{long}\n", check=True).stdout
    [rec] = json_records(tfm("encode", "--model", tiny_bert, "--truncate", input=tokens, check=True).stdout)
    assert len(rec["input_ids"]) == 64 and rec["tokens"][-1] == "[SEP]"


def test_ids_outside_the_vocabulary(tiny_bert):
    proc = tfm("encode", "--model", tiny_bert, input='{"input_ids": [2, 5000, 3]}\n{"input_ids": [2, -1, 3]}\n')
    recs = json_records(proc.stdout)
    assert proc.returncode == 1
    assert "token id 5000 is outside the vocabulary (size 400)" in recs[0]["error"]["message"]
    assert "token id -1" in recs[1]["error"]["message"]


def broken(tmp_path, name: str, mutate) -> str:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / "tiny-bert", folder)
    mutate(folder)
    return str(folder)


@pytest.mark.parametrize("name, mutate, words", [
    ("missing-onnx", lambda f: (f / "model.onnx").unlink(), "no model.onnx"),
    ("empty-onnx", lambda f: (f / "model.onnx").write_bytes(b""), "is empty"),
    ("garbage-onnx", lambda f: (f / "model.onnx").write_bytes(b"\x08\x07garbage" * 10), "cannot load"),
    ("garbage-tokenizer", lambda f: (f / "tokenizer.json").write_text("{nope"), "tokenizer.json"),
    ("absurd-config", lambda f: (f / "config.json").write_text('{"hidden_size": -5, "max_position_embeddings": 1e30}'), "config.json"),
    ("no-config", lambda f: (f / "config.json").unlink(), "config.json is missing"),
])
def test_broken_model_folders_are_fatal(tmp_path, name, mutate, words):
    model = broken(tmp_path, name, mutate)
    proc = tfm("encode", "--model", model, input="the cat\n")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""
    [line] = stderr_lines(proc)
    assert line.startswith("tfm encode: error:") and words in line, line


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin", "link.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    import onnx
    from onnx.external_data_helper import set_external_data

    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "tiny-bert", folder)
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    (folder / "link.bin").symlink_to(tmp_path / "outside.bin")
    model = onnx.load(str(folder / "model.onnx"))
    tensor = model.graph.initializer[0]
    set_external_data(tensor, location=location, offset=0, length=16)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(folder / "model.onnx"))
    proc = tfm("encode", "--model", folder, input="the cat\n")
    assert proc.returncode == 2 and proc.stdout == b""
    [line] = stderr_lines(proc)
    assert "refused" in line


def test_unknown_device_and_unavailable_device_are_errors():
    proc = tfm("encode", "--device", "tpu9", input="x\n")
    assert proc.returncode == 2 and "unknown device" in proc.stderr.decode()
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        proc = tfm("encode", "--device", "cuda", input="x\n")
        assert proc.returncode == 2 and proc.stdout == b""
        [line] = stderr_lines(proc)
        assert "device 'cuda' is not available" in line


def test_verbose_says_which_device():
    proc = tfm("encode", "--verbose", "--device", "auto", input="x\n", check=True)
    assert "running on" in proc.stderr.decode()
