"""Scaled dot-product attention on given arrays, run as a small ONNX graph.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

with the width D split into H heads of d_k = D / H, each head attending on
its own, and the heads' contexts concatenated back to width D.  Masked keys
(padding, or later positions under --causal) get weight exactly 0.  A query
row that may see no key at all gets all-zero weights and a zero context, and a
warning, never NaN.  The graph runs on the engine, so any onnxruntime device
can run it; a float64 numpy reference lives only in the tests.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from tfm.core import fields as F
from tfm.core import process
from tfm.core.engine import Engine
from tfm.core.errors import FatalError, ItemError
from tfm.core.stream import Record

MAX_ATTENTION_BYTES = int(os.environ.get("TFM_MAX_ATTENTION_BYTES", 2 << 30))
SCALES = ("sqrt", "none")
NEG = -1e30  # added to masked scores; finite so a fully masked row cannot turn into NaN


def check_memory(batch: int, heads: int, tq: int, tk: int) -> None:
    need = batch * heads * tq * tk * 4
    if need > MAX_ATTENTION_BYTES:
        raise ItemError(
            f"attention weights would need B·H·T·T_k·4 = {batch}·{heads}·{tq}·{tk}·4 = {need:,} bytes, over the "
            f"limit of {MAX_ATTENTION_BYTES:,} (TFM_MAX_ATTENTION_BYTES)",
            "too-large",
        )


def attention_graph(heads: int, scale: float):
    """ONNX model: (q (B,Tq,D), k (B,Tk,D), v (B,Tk,Dv), keep (B,Tq,Tk)) -> (context (B,Tq,Dv), probs (B,H,Tq,Tk))."""
    import onnx
    from onnx import TensorProto, helper

    def const(name, values, dtype=TensorProto.INT64):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, [len(values)], values))

    nodes = [
        const("split_shape", [0, 0, heads, -1]),
        const("merge_shape", [0, 0, -1]),
        const("scale", [scale], TensorProto.FLOAT),
        const("neg", [NEG], TensorProto.FLOAT),
        const("one", [1.0], TensorProto.FLOAT),
    ]
    for x in ("q", "k", "v"):  # (B, T, D) -> (B, H, T, d)
        nodes.append(helper.make_node("Reshape", [x, "split_shape"], [f"{x}_split"]))
        nodes.append(helper.make_node("Transpose", [f"{x}_split"], [f"{x}_heads"], perm=[0, 2, 1, 3]))
    nodes += [
        helper.make_node("Transpose", ["k_heads"], ["k_t"], perm=[0, 1, 3, 2]),  # (B, H, d, Tk)
        helper.make_node("MatMul", ["q_heads", "k_t"], ["dots"]),  # (B, H, Tq, Tk)
        helper.make_node("Mul", ["dots", "scale"], ["scores"]),
        helper.make_node("Unsqueeze", ["keep", "axis1"], ["keep_h"]),  # (B, 1, Tq, Tk)
        helper.make_node("Sub", ["one", "keep_h"], ["dropped"]),
        helper.make_node("Mul", ["dropped", "neg"], ["bias"]),
        helper.make_node("Add", ["scores", "bias"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["soft"], axis=-1),
        helper.make_node("Mul", ["soft", "keep_h"], ["probs"]),  # fully masked rows become exactly 0
        helper.make_node("MatMul", ["probs", "v_heads"], ["ctx_heads"]),  # (B, H, Tq, dv)
        helper.make_node("Transpose", ["ctx_heads"], ["ctx_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_t", "merge_shape"], ["context"]),  # (B, Tq, H·dv)
    ]
    nodes.insert(0, const("axis1", [1]))
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "tfm-attention",
        [helper.make_tensor_value_info("q", f, ["B", "Tq", "D"]),
         helper.make_tensor_value_info("k", f, ["B", "Tk", "D"]),
         helper.make_tensor_value_info("v", f, ["B", "Tk", "Dv"]),
         helper.make_tensor_value_info("keep", f, ["B", "Tq", "Tk"])],
        [helper.make_tensor_value_info("context", f, ["B", "Tq", "Dv"]),
         helper.make_tensor_value_info("probs", f, ["B", heads, "Tq", "Tk"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def keep_mask(tq: int, tk: int, key_mask: np.ndarray | None, causal: bool) -> np.ndarray:
    """(Tq, Tk) float: 1 where query i may attend to key j."""
    keep = np.ones((tq, tk), dtype=np.float32)
    if key_mask is not None:
        keep *= (key_mask != 0).astype(np.float32)[None, :]
    if causal:  # query i sees keys up to i (aligned at the end when Tk > Tq, as with a cache)
        offset = tk - tq
        keep *= np.tri(tq, tk, k=offset, dtype=np.float32)
    return keep


class MathAttendStage:
    """`tfm attend` without a model: attention on the record's own tensors."""

    def __init__(self, engine: Engine, *, heads: int = 1, scale: str = "sqrt", causal: bool = False,
                 query: str | None = None, key: str | None = None, value: str | None = None, mask: str = "attention_mask"):
        if heads < 1:
            raise FatalError("--heads must be at least 1")
        if scale not in SCALES:
            raise FatalError(f"--scale must be one of {', '.join(SCALES)}")
        self.engine, self.heads, self.scale, self.causal = engine, heads, scale, causal
        self.query, self.key, self.value, self.mask = query, key, value, mask
        self.sessions: dict[float, Any] = {}

    def _names(self, rec: Record) -> tuple[str, str, str]:
        f = rec.fields
        q = self.query or next((n for n in ("q", "hidden_states", "inputs_embeds") if n in f), "array" if rec.bare else "q")
        k = self.key or ("k" if "k" in f else q)
        v = self.value or ("v" if "v" in f else k)
        return q, k, v

    def prepare(self, rec: Record):
        qn, kn, vn = self._names(rec)
        q = F.float_tensor(rec, qn, shape_hint="(T, D)")
        k = F.float_tensor(rec, kn, shape_hint="(T_k, D)")
        v = F.float_tensor(rec, vn, shape_hint="(T_k, D_v)")
        if q.shape[1] != k.shape[1]:
            raise ItemError(f"{qn} is {q.shape} and {kn} is {k.shape}: queries and keys need the same width", "bad-shape")
        if k.shape[0] != v.shape[0]:
            raise ItemError(f"{kn} has {k.shape[0]} rows but {vn} has {v.shape[0]}: one value per key", "bad-shape")
        for name, x in ((qn, q), (vn, v)):
            if x.shape[1] % self.heads:
                raise ItemError(f"--heads {self.heads} does not divide the width {x.shape[1]} of {name}; "
                                f"expected (T, D) with D a multiple of {self.heads}", "bad-shape")
        if len(q) == 0 or len(k) == 0:
            raise ItemError("attention needs at least one query and one key", "empty")
        key_mask = F.int_vector(rec, self.mask, required=False) if self.mask in rec.fields else None
        if key_mask is not None and len(key_mask) != len(k):
            raise ItemError(f"{self.mask} has {len(key_mask)} entries but there are {len(k)} keys", "bad-shape")
        check_memory(1, self.heads, len(q), len(k))
        return rec, q, k, v, keep_mask(len(q), len(k), key_mask, self.causal)

    def session(self, d_k: int):
        scale = 1.0 / math.sqrt(d_k) if self.scale == "sqrt" else 1.0
        if scale not in self.sessions:
            model = attention_graph(self.heads, scale)
            self.sessions[scale] = self.engine.session(model.SerializeToString(), key=f"attention:{self.heads}:{scale}")
        return self.sessions[scale]

    def run(self, items: list) -> list[dict]:
        out = []
        for rec, q, k, v, keep in items:
            sess = self.session(q.shape[1] // self.heads)
            context, probs = sess.run(None, {"q": q[None], "k": k[None], "v": v[None], "keep": keep[None]})
            blind = np.flatnonzero(keep.sum(1) == 0)
            if blind.size:
                process.warn(f"{rec.where}: query rows {blind.tolist()} may attend to no key; "
                             "their weights and context are zero")
            fields = F.passthrough(rec, drop=("context", "attentions"))
            fields["context"] = context[0]
            fields["attentions"] = probs[0]
            out.append(fields)
        return out
