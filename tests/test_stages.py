"""embed, posenc, attend: each stage is the model's own computation, and they compose.

Tolerances: 1e-5 for embeddings and layer inputs, 1e-4 after attention.
The tiny BERT's references are PyTorch's own intermediate tensors
(output_hidden_states / output_attentions, eager attention), made by
tests/fixtures/make_fixtures.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from conftest import FIXTURES, json_records, npy_records, stderr_lines, tfm
from tfm.core import graph
from tfm.core.attention import MathAttendStage
from tfm.core.engine import Engine
from tfm.core.modeldir import resolve
from tfm.core.stages import EmbedStage, ModelAttendStage, PosencStage, sinusoidal
from tfm.core.encode import EncodeStage
from tfm.core.stream import Record


def stages(model):
    m, e = resolve(model), Engine("cpu", 2)
    return EmbedStage(m, e), PosencStage(m, e, "learned"), ModelAttendStage(m, e, None, True), EncodeStage(m, e)


def through(stage, records):
    return stage.run([stage.prepare(Record(r, "test", i)) for i, r in enumerate(records)])


@pytest.fixture(scope="module")
def tiny_ref():
    return np.load(FIXTURES / "tiny-bert" / "reference.npz")


def token_records(ref, prefix=""):
    out = []
    for i in range(len(ref[prefix + "input_ids"])):
        n = int(ref[prefix + "attention_mask"][i].sum())
        out.append({k: ref[prefix + k][i, :n] for k in ("input_ids", "attention_mask", "token_type_ids")})
    return out


def test_tiny_bert_every_seam_equals_torch(tiny_ref):
    """embed | posenc == hidden_states[0]; attend --add-norm | encode --from-layer == the rest."""
    embed, posenc, attend, encode = stages(str(FIXTURES / "tiny-bert"))
    recs = token_records(tiny_ref)
    x0 = through(posenc, through(embed, recs))
    for i, r in enumerate(x0):
        n = len(recs[i]["input_ids"])
        assert r["seam"] == "layers.0.input"
        np.testing.assert_allclose(r["hidden_states"], tiny_ref["hidden_states"][0, i, :n], atol=1e-5)
    layers = tiny_ref["attentions"].shape[0]
    state = x0
    for layer in range(layers):
        # the model's own attention probabilities for this layer
        att = through(attend, state)
        for i, r in enumerate(att):
            n = len(recs[i]["input_ids"])
            np.testing.assert_allclose(r["attentions"], tiny_ref["attentions"][layer, i, :, :n, :n], atol=1e-4)
            assert r["seam"] == f"layers.{layer}.attention.add_norm"
        # finishing the layer from its middle gives torch's next hidden state
        nxt = [{**r, "hidden_states": tiny_ref["hidden_states"][layer + 1, i, : len(recs[i]["input_ids"])]}
               for i, r in enumerate(att)]
        for i, r in enumerate(through(encode, att)):  # encode continues from the middle of the layer
            n = len(recs[i]["input_ids"])
            np.testing.assert_allclose(r["last_hidden_state"], tiny_ref["last_hidden_state"][i, :n], atol=1e-4)
        state = [{k: v for k, v in r.items() if k != "seam"} | {"seam": f"layers.{layer + 1}.input"} for r in nxt]


def test_tiny_bert_structure_is_found_by_graph_shape():
    s = graph.structure(resolve(str(FIXTURES / "tiny-bert")).onnx())
    assert len(s.layers) == 2 and s.post_ln
    assert s.word_table and s.position_table and s.token_type_table


def test_embedded_model_composition_law_through_pipes():
    """tokenize | embed | posenc | encode == tokenize | encode, over real pipes in NumPy mode."""
    text = "A cat sits on the mat.\nStock prices fell sharply in New York today!\n"
    tok = tfm("tokenize", "-f", "npy", input=text, check=True).stdout
    emb = tfm("embed", "-f", "npy", input=tok, check=True).stdout
    pos = tfm("posenc", "-f", "npy", input=emb, check=True).stdout
    staged = npy_records(tfm("encode", "-f", "npy", input=pos, check=True).stdout)
    direct = npy_records(tfm("encode", "-f", "npy", input=tok, check=True).stdout)
    for a, b in zip(staged, direct):
        np.testing.assert_allclose(a["last_hidden_state"], b["last_hidden_state"], atol=1e-5)
    assert "hidden_states" not in staged[0] and "inputs_embeds" not in staged[0]


def model_tensors(model_path, feeds: dict, names: list[str]) -> list[np.ndarray]:
    """The model's own internal tensors: the full graph with extra outputs (no fusions)."""
    import onnx
    import onnxruntime as ort

    g = graph.load(model_path)
    m = onnx.ModelProto()
    m.CopyFrom(g.model)
    types = g.types()
    for n in names:
        m.graph.output.append(onnx.helper.make_value_info(n, types[n]))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(names, feeds)


def test_embedded_model_stages_equal_its_internal_tensors():
    path = resolve(None).onnx()
    seams = graph.seams(path)["seams"]
    embed, posenc, attend, encode = stages(None)
    recs = [{"text": "the quick brown fox jumps over the lazy dog"}]
    e = through(embed, recs)
    x0 = through(posenc, e)
    a = through(attend, x0)
    ids = e[0]["input_ids"][None]
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    names = ["embeddings.word", "layers.0.input", "layers.0.attention.probs", "layers.0.attention.output",
             "layers.0.attention.add_norm"]
    word, layer0, probs, out, add_norm = model_tensors(path, feeds, [seams[n] for n in names])
    np.testing.assert_allclose(e[0]["inputs_embeds"], word[0], atol=1e-5)
    np.testing.assert_allclose(x0[0]["hidden_states"], layer0[0], atol=1e-5)
    np.testing.assert_allclose(a[0]["attentions"], probs[0], atol=1e-4)
    np.testing.assert_allclose(a[0]["attention_output"], out[0], atol=1e-4)
    np.testing.assert_allclose(a[0]["hidden_states"], add_norm[0], atol=1e-4)
    assert a[0]["attentions"].shape == (12, ids.shape[1], ids.shape[1])


def test_attend_layer_from_the_cli_matches_the_internal_tensor():
    path = resolve(None).onnx()
    seams = graph.seams(path)["seams"]
    tok = tfm("tokenize", "-f", "npy", input="a cat sits on the mat\n", check=True).stdout
    pos = tfm("posenc", "-f", "npy", input=tfm("embed", "-f", "npy", input=tok, check=True).stdout, check=True).stdout
    # layer 2: start from the model's own layer-2 input
    [rec] = npy_records(pos)
    ids = rec["input_ids"][None]
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    x2, probs2 = model_tensors(path, feeds, [seams["layers.2.input"], seams["layers.2.attention.probs"]])
    line = {"hidden_states": x2[0].tolist(), "attention_mask": [1] * ids.shape[1]}
    import json
    proc = tfm("attend", "--layer", "2", input=json.dumps(line) + "\n", check=True)
    [out] = json_records(proc.stdout)
    np.testing.assert_allclose(np.array(out["attentions"]), probs2[0], atol=1e-4)
    np.testing.assert_allclose(np.array(out["attentions"]).sum(-1), 1.0, atol=1e-5)


def test_encode_from_layer():
    embed, posenc, attend, encode = stages(None)
    x0 = through(posenc, through(embed, [{"text": "hello there world"}]))
    path = resolve(None).onnx()
    ids = x0[0]["input_ids"][None]
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    [x3] = model_tensors(path, feeds, [graph.seams(path)["seams"]["layers.3.input"]])
    m = resolve(None)
    enc3 = EncodeStage(m, Engine("cpu", 2), from_layer=3)
    [a] = through(enc3, [{"hidden_states": x3[0], "attention_mask": np.ones(ids.shape[1], np.int64)}])
    [b] = through(encode, [{"input_ids": ids[0]}])
    np.testing.assert_allclose(a["last_hidden_state"], b["last_hidden_state"], atol=1e-4)


# --- embed ---------------------------------------------------------------------------------


def test_embed_rows_are_the_table():
    path = resolve(None).onnx()
    info = graph.seams(path)
    table = graph.load(path).constant(info["word_table"]).astype(np.float32)
    [rec] = json_records(tfm("embed", input='{"input_ids": [101, 4937, 102]}\n', check=True).stdout)
    np.testing.assert_allclose(np.array(rec["inputs_embeds"]), table[[101, 4937, 102]], atol=1e-6)


def test_embed_out_of_vocabulary():
    proc = tfm("embed", input='{"input_ids": [101, 30522, 102]}\n{"input_ids": [101, 102]}\n')
    recs = json_records(proc.stdout)
    assert proc.returncode == 1 and "ok" not in recs[1]
    assert "token id 30522 is outside the vocabulary (size 30522)" in recs[0]["error"]["message"]


# --- posenc --------------------------------------------------------------------------------


def test_sinusoidal_formula_and_layout():
    pe = sinusoidal(50, 16)
    np.testing.assert_array_equal(pe[0], np.tile([0.0, 1.0], 8))  # sin 0 = 0 on even, cos 0 = 1 on odd
    for pos in (1, 7, 49):
        for i in range(8):
            w = pos / 10000 ** (2 * i / 16)
            assert pe[pos, 2 * i] == pytest.approx(np.sin(w), abs=1e-6)
            assert pe[pos, 2 * i + 1] == pytest.approx(np.cos(w), abs=1e-6)
    # the dot product of two encodings depends only on their distance
    for k in (1, 3, 10):
        dots = [pe[p] @ pe[p + k] for p in range(0, 50 - k)]
        assert np.ptp(dots) < 1e-5
    assert sinusoidal(3, 5).shape == (3, 5)


def test_posenc_sinusoidal_on_a_bare_array_and_only():
    buf = io.BytesIO()
    x = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    np.save(buf, x)
    [rec] = json_records(tfm("posenc", "--kind", "sinusoidal", input=buf.getvalue(), check=True).stdout)
    np.testing.assert_allclose(np.array(rec["hidden_states"]), x + sinusoidal(6, 8), atol=1e-6)
    [rec] = json_records(tfm("posenc", "--kind", "sinusoidal", "--only", "--length", "4", "--dim", "6", check=True).stdout)
    np.testing.assert_allclose(np.array(rec["position_encoding"]), sinusoidal(4, 6), atol=1e-7)


def test_posenc_learned_only_is_the_models_table():
    path = resolve(None).onnx()
    table = graph.load(path).constant(graph.seams(path)["position_table"]).astype(np.float32)
    [rec] = json_records(tfm("posenc", "--only", "--length", "5", check=True).stdout)
    np.testing.assert_array_equal(np.array(rec["position_encoding"], np.float32), table[:5])


def test_posenc_learned_needs_inputs_embeds():
    proc = tfm("posenc", input='{"input_ids": [1, 2]}\n')
    [rec] = json_records(proc.stdout)
    assert proc.returncode == 1 and "inputs_embeds" in rec["error"]["message"] and "tfm embed" in rec["error"]["message"]


def test_too_long_for_position_table():
    x = np.zeros((600, 384), np.float32)
    buf = io.BytesIO()
    np.save(buf, x)
    proc = tfm("posenc", "--only", input=buf.getvalue())
    assert proc.returncode == 1 and "600 positions" in proc.stderr.decode()


# --- attend, math mode ---------------------------------------------------------------------


def reference_attention(q, k, v, heads, keep, scale=True):
    """float64 numpy reference: split heads, softmax(QKᵀ/√d)V, masked keys get weight 0."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    tq, d = q.shape
    dk = d // heads
    qh = q.reshape(tq, heads, dk).transpose(1, 0, 2)
    kh = k.reshape(len(k), heads, dk).transpose(1, 0, 2)
    vh = v.reshape(len(v), heads, -1).transpose(1, 0, 2)
    s = qh @ kh.transpose(0, 2, 1) / (np.sqrt(dk) if scale else 1.0)
    s = np.where(keep[None] > 0, s, -np.inf)
    with np.errstate(invalid="ignore"):
        w = np.exp(s - s.max(-1, keepdims=True))
        w = w / w.sum(-1, keepdims=True)
    w = np.nan_to_num(w)
    ctx = (w @ vh).transpose(1, 0, 2).reshape(tq, -1)
    return ctx, w


def run_math(records, **kw):
    stage = MathAttendStage(Engine("cpu", 2), **kw)
    return through(stage, records)


@pytest.mark.parametrize("tq, tk, d, heads, causal, masked", [
    (5, 5, 8, 1, False, False), (7, 7, 16, 4, True, False), (3, 9, 12, 3, False, True),
    (6, 6, 64, 8, True, True), (1, 1, 4, 2, False, False), (4, 10, 6, 2, True, True),
])
def test_math_mode_matches_float64_reference(tq, tk, d, heads, causal, masked):
    rng = np.random.default_rng(tq * 100 + tk)
    q = rng.standard_normal((tq, d)).astype(np.float32)
    k = rng.standard_normal((tk, d)).astype(np.float32)
    v = rng.standard_normal((tk, d)).astype(np.float32)
    rec = {"q": q, "k": k, "v": v}
    key_mask = np.ones(tk, np.int64)
    if masked:
        key_mask[-2:] = 0
        rec["attention_mask"] = key_mask
    keep = (key_mask[None, :] > 0).astype(float) * (np.tri(tq, tk, k=tk - tq) if causal else 1)
    [out] = run_math([rec], heads=heads, causal=causal)
    ctx, w = reference_attention(q, k, v, heads, keep)
    np.testing.assert_allclose(out["attentions"], w, atol=1e-5)
    np.testing.assert_allclose(out["context"], ctx, atol=1e-5)
    np.testing.assert_allclose(out["attentions"].sum(-1), 1.0, atol=1e-5)
    if causal:
        upper = np.triu(np.ones((tq, tk), bool), k=tk - tq + 1)
        assert (out["attentions"][:, upper] == 0).all()
    if masked:
        assert (out["attentions"][..., -2:] == 0).all()


def test_one_tensor_is_self_attention_and_cross_attention_uses_two_fields():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    enc = rng.standard_normal((6, 8)).astype(np.float32)
    [self_att] = run_math([{"q": x}], heads=2)
    np.testing.assert_allclose(self_att["context"], reference_attention(x, x, x, 2, np.ones((4, 4)))[0], atol=1e-5)
    [cross] = run_math([{"dec": x, "enc": enc}], heads=2, query="dec", key="enc")
    assert cross["attentions"].shape == (2, 4, 6)
    np.testing.assert_allclose(cross["context"], reference_attention(x, enc, enc, 2, np.ones((4, 6)))[0], atol=1e-5)


def test_scale_none_saturates_softmax():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    [scaled] = run_math([{"q": x}])
    [raw] = run_math([{"q": x}], scale="none")
    assert raw["attentions"].max(-1).mean() > 0.99  # one-hot
    assert scaled["attentions"].max(-1).mean() < raw["attentions"].max(-1).mean()


def test_fully_masked_row_is_zero_not_nan():
    proc = tfm("attend", input='{"q": [[1.0, 0.0], [0.0, 1.0]], "attention_mask": [0, 0]}\n')
    assert proc.returncode == 0
    [rec] = json_records(proc.stdout)
    assert np.array(rec["attentions"]).sum() == 0 and np.array(rec["context"]).sum() == 0
    assert "attend to no key" in proc.stderr.decode()


@pytest.mark.parametrize("record, args, words", [
    ('{"input_ids": [1, 2]}', [], "record lacks 'q'"),
    ('{"q": [[1.0, 0.0]], "k": [[1.0, 0.0, 0.0]]}', [], "same width"),
    ('{"q": [1.0, 2.0]}', [], "shape (T, D)"),
    ('{"q": [[1.0, 2.0, 3.0]]}', ["--heads", "2"], "does not divide"),
    ('{"q": [[1, 2]]}', [], "must hold floats"),
    ('{"q": [[1.0, 2.0]], "attention_mask": [1, 1, 1]}', [], "3 entries but there are 1 keys"),
])
def test_bad_attention_input(record, args, words):
    proc = tfm("attend", *args, input=record + "\n")
    assert proc.returncode == 1
    [rec] = json_records(proc.stdout)
    assert words in rec["error"]["message"], rec
    assert len(stderr_lines(proc)) == 1


def test_attention_memory_is_refused_before_allocating(monkeypatch):
    from tfm.core import attention

    monkeypatch.setattr(attention, "MAX_ATTENTION_BYTES", 1000)
    from tfm.core.errors import ItemError

    stage = MathAttendStage(Engine("cpu", 1), heads=2)
    with pytest.raises(ItemError, match=r"B·H·T·T_k·4 = 1·2·20·20·4 = 3,200 bytes"):
        stage.prepare(Record({"q": np.zeros((20, 4), np.float32)}, "x", 1))


def test_nan_input_is_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([[1.0, np.nan]], np.float32))
    proc = tfm("attend", input=buf.getvalue())
    assert proc.returncode == 1 and "NaN" in proc.stderr.decode()


def test_complex_input_is_refused():
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 2), np.complex64))
    proc = tfm("posenc", "--kind", "sinusoidal", input=buf.getvalue())
    assert proc.returncode == 1 and "must be a float tensor (T, D), got complex64" in proc.stderr.decode()
