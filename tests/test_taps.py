"""--tap: internal tensors of the model's own graph, under readable names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES, json_records, npy_records, stderr_lines, tfm
from tfm.core import graph, taps
from tfm.core.encode import EncodeStage
from tfm.core.engine import Engine
from tfm.core.modeldir import resolve
from tfm.core.stream import Record

TEXTS = ["A cat sits on the mat.", "Stock prices fell sharply in New York on Tuesday afternoon."]


def encode(model, texts, **kw):
    stage = EncodeStage(resolve(model), Engine("cpu", 2), **kw)
    return stage.run([stage.prepare(Record({"text": t}, "t", i)) for i, t in enumerate(texts)])


def test_every_layers_attention_and_unchanged_output():
    tapped = encode(None, TEXTS, taps=["attentions", "hidden-states"])
    plain = encode(None, TEXTS)
    for rec, ref in zip(tapped, plain):
        n = len(rec["input_ids"])
        np.testing.assert_allclose(rec["last_hidden_state"], ref["last_hidden_state"], atol=1e-5)
        for layer in range(6):
            probs = rec[f"layers.{layer}.attention.probs"]
            assert probs.shape == (12, n, n)
            np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
            assert rec[f"layers.{layer}.output"].shape == (n, 384)
        np.testing.assert_allclose(rec["layers.5.output"], rec["last_hidden_state"], atol=1e-5)


def test_batched_taps_equal_one_at_a_time():
    together = encode(None, TEXTS, taps=["attentions"])
    for text, rec in zip(TEXTS, together):
        [alone] = encode(None, [text], taps=["attentions"])
        for layer in (0, 5):
            name = f"layers.{layer}.attention.probs"
            assert rec[name].shape == alone[name].shape
            np.testing.assert_allclose(rec[name], alone[name], atol=1e-5)


def test_tapped_attention_equals_attend_on_the_same_input():
    """Layer L's tapped probabilities == tfm attend --layer L on the tapped input of layer L."""
    proc = tfm("encode", "-f", "npy", "--tap", "attentions", "--tap", "hidden-states", input=TEXTS[0] + "\n", check=True)
    [rec] = npy_records(proc.stdout)
    for layer in (0, 3, 5):
        source = "embeddings.output" if layer == 0 else f"layers.{layer - 1}.output"
        line = json.dumps({"hidden_states": rec[source].tolist(), "attention_mask": rec["attention_mask"].tolist()})
        [out] = json_records(tfm("attend", "--layer", layer, input=line + "\n", check=True).stdout)
        np.testing.assert_allclose(np.array(out["attentions"]), rec[f"layers.{layer}.attention.probs"], atol=1e-4)


def test_tiny_bert_taps_equal_torch():
    ref = np.load(FIXTURES / "tiny-bert" / "reference.npz")
    out = encode(str(FIXTURES / "tiny-bert"), [str(t) for t in ref["texts"]], taps=["attentions", "hidden-states"])
    for i, rec in enumerate(out):
        n = int(ref["attention_mask"][i].sum())
        np.testing.assert_allclose(rec["embeddings.output"], ref["hidden_states"][0, i, :n], atol=1e-5)
        for layer in range(2):
            np.testing.assert_allclose(rec[f"layers.{layer}.attention.probs"], ref["attentions"][layer, i, :, :n, :n], atol=1e-4)
            np.testing.assert_allclose(rec[f"layers.{layer}.output"], ref["hidden_states"][layer + 1, i, :n], atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny-vit", "tiny-vit-trained"])
def test_vit_taps_equal_torch(fixture):
    """A pre-LN encoder: the same structure finder, the same taps, checked against torch."""
    import onnxruntime as ort

    path = FIXTURES / fixture / "model.onnx"
    ref = np.load(FIXTURES / fixture / "reference.npz")
    s = graph.structure(path)
    assert not s.post_ln and len(s.layers) == 2
    chosen = taps.select(path, ["attentions", "hidden-states"])
    names = list(chosen)
    blob, _ = taps.tapped_graph(path, [chosen[n]["tensor"] for n in names])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
    outs = dict(zip(["logits"] + names, sess.run(["logits"] + [chosen[n]["tensor"] for n in names],
                                                 {"pixel_values": ref["pixel_values"]})))
    np.testing.assert_allclose(outs["logits"], ref["logits"], atol=1e-4)
    np.testing.assert_allclose(outs["embeddings.output"], ref["hidden_states"][0], atol=1e-5)
    for layer in range(2):
        np.testing.assert_allclose(outs[f"layers.{layer}.attention.probs"], ref["attentions"][layer], atol=1e-4)
        np.testing.assert_allclose(outs[f"layers.{layer}.output"], ref["hidden_states"][layer + 1], atol=1e-5)


def test_op_type_and_glob_patterns():
    [rec] = encode(None, ["hello world"], taps=["Softmax", "layers.0.**"])
    assert {f"layers.{k}.attention.probs" for k in range(6)} <= set(rec)
    assert "layers.0.attention.add_norm" in rec and "layers.0.erf.0" in rec
    assert "layers.1.attention.add_norm" not in rec


def test_taps_command_lists_names_and_shapes():
    proc = tfm("taps", "--match", "attentions", check=True)
    lines = proc.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == [f"layers.{k}.attention.probs" for k in range(6)]
    assert all("Softmax" in line for line in lines)
    proc = tfm("taps", "-f", "json", "--model", FIXTURES / "tiny-bert", check=True)
    rows = json_records(proc.stdout)
    assert {"embeddings.word", "layers.1.output"} <= {r["name"] for r in rows}


def test_unknown_tap_is_a_usage_error():
    proc = tfm("encode", "--tap", "layers.99.nothing", input="x\n")
    assert proc.returncode == 2 and proc.stdout == b""
    [line] = stderr_lines(proc)
    assert "matches nothing" in line and "tfm taps" in line


def test_taps_need_token_records():
    tok = tfm("tokenize", input="a b\n", check=True).stdout
    pos = tfm("posenc", input=tfm("embed", input=tok, check=True).stdout, check=True).stdout
    proc = tfm("encode", "--tap", "attentions", input=pos)
    assert proc.returncode == 1 and "--tap needs token records" in proc.stderr.decode()
