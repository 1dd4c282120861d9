"""The stages of a text Transformer, each run as a piece of the model's own graph.

    tokenize -> embed -> posenc -> [attend ->] encode

A record between stages carries ``hidden_states`` (T, D) and ``seam``: the
name of the place in the model that tensor belongs to (``layers.0.input``,
``layers.3.attention.add_norm``, ...; see tfm.core.graph).  The next stage
starts the model's graph exactly there, so the stages compose to what the
model computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tfm.core import fields as F
from tfm.core import graph
from tfm.core.attention import check_memory
from tfm.core.encode import TokenInputs, TokenItem
from tfm.core.engine import Engine
from tfm.core.errors import FatalError, ItemError
from tfm.core.modeldir import ModelDir
from tfm.core.stream import Record

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Piece:
    """The part of a model's graph between seams, as an onnxruntime session."""

    def __init__(self, model: ModelDir, engine: Engine, start: list[str], end: list[str]):
        self.path = model.onnx()
        self.info = graph.seams(self.path)
        seams = self.info["seams"]
        for name in start + end:
            if name not in seams and name not in TOKEN_INPUTS and name != "pixel_values":
                raise FatalError(f"model {model.name} has no {name!r}")
        tensor = {name: seams.get(name, name) for name in start + end}
        blob, names, key = graph.cut_cached(self.path, [tensor[s] for s in start], [tensor[e] for e in end])
        self.session = engine.session(blob, key=f"{self.path}:{key}")
        by_tensor = {tensor[s]: s for s in start}
        self.feeds = {n: by_tensor.get(n, n) for n in names}  # graph input -> seam or token field
        self.end = end
        self.end_tensors = [tensor[e] for e in end]

    def run(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name, field_name in self.feeds.items():
            if field_name in batch:
                feed[name] = batch[field_name]
            elif field_name == "input_ids":  # needed only for its shape
                feed[name] = np.zeros(batch["attention_mask"].shape, dtype=np.int64)
            else:
                raise FatalError(f"the graph needs {field_name!r}")
        outs = self.session.run(self.end_tensors, feed)
        return dict(zip(self.end, outs))


def pad_states(states: list[np.ndarray]) -> np.ndarray:
    """(B, T_max, D) from B tensors of shape (T_b, D); padding is zeros."""
    width = max(len(s) for s in states)
    out = np.zeros((len(states), width, states[0].shape[1]), dtype=np.float32)
    for b, s in enumerate(states):
        out[b, : len(s)] = s
    return out


def seam_layer(seam: str | None) -> int | None:
    if isinstance(seam, str) and seam.startswith("layers.") and seam.endswith(".input"):
        try:
            return int(seam.split(".")[1])
        except ValueError:
            return None
    return None


# ----------------------------------------------------------------------- embed


class EmbedStage:
    """`tfm embed`: token ids to rows of the model's word embedding table."""

    def __init__(self, model: ModelDir, engine: Engine, truncate: bool = False):
        self.inputs = TokenInputs(model, truncate=truncate)
        self.piece = Piece(model, engine, ["input_ids"], ["embeddings.word"])
        self.inputs.vocab_size = self.piece.info.get("vocab_size", self.inputs.vocab_size)

    def prepare(self, rec: Record) -> TokenItem:
        return self.inputs.item(rec)

    def run(self, items: list[TokenItem]) -> list[dict]:
        batch = self.inputs.batch(items)
        emb = self.piece.run(batch)["embeddings.word"]  # (B, T, D)
        out = []
        for b, it in enumerate(items):
            fields = F.passthrough(it.record, drop=("inputs_embeds", "hidden_states", "seam"))
            fields.update(it.extra)
            fields["inputs_embeds"] = np.ascontiguousarray(emb[b, : len(it.ids)])
            out.append(fields)
        return out


# ----------------------------------------------------------------------- posenc


def sinusoidal(length: int, dim: int) -> np.ndarray:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)); dims counted from 0."""
    pos = np.arange(length, dtype=np.float64)[:, None]  # (T, 1)
    two_i = np.arange(0, dim, 2, dtype=np.float64)[None, :]  # (1, ceil(D/2))
    angle = pos / np.power(10000.0, two_i / dim)  # (T, ceil(D/2))
    pe = np.zeros((length, dim), dtype=np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : dim // 2])
    return pe.astype(np.float32)


KINDS = ("learned", "sinusoidal")


class PosencStage:
    """`tfm posenc`: add position information the way the model does (or the textbook way)."""

    def __init__(self, model: ModelDir | None, engine: Engine | None, kind: str, only: bool = False,
                 length: int | None = None, dim: int | None = None):
        if kind not in KINDS:
            raise FatalError(f"--kind must be one of {', '.join(KINDS)}")
        self.kind, self.only, self.length, self.dim = kind, only, length, dim
        self.model = model
        self.table = None
        if kind == "learned":
            if model is None:
                raise FatalError("--kind learned needs a model")
            if only:
                self.table = self._position_table(model)
            else:
                assert engine is not None
                self.piece = Piece(model, engine, ["embeddings.word"], ["embeddings.output"])
                self.max_len = model.max_positions

    @staticmethod
    def _position_table(model: ModelDir) -> np.ndarray:
        path = model.onnx()
        info = graph.seams(path)
        if not info.get("position_table"):
            raise FatalError(f"model {model.name} has no learned position table")
        return graph.load(path).constant(info["position_table"]).astype(np.float32)

    def encoding(self, length: int, dim: int | None) -> np.ndarray:
        if self.kind == "sinusoidal":
            if not dim:
                raise ItemError("--dim is needed for a sinusoidal encoding without input", "missing-field")
            return sinusoidal(length, dim)
        table = self.table
        if length > len(table):
            raise ItemError(f"{length} positions, more than the model's table of {len(table)}", "too-long")
        return table[:length]

    def prepare(self, rec: Record) -> Any:
        x = rec.fields.get("inputs_embeds")
        name = "inputs_embeds"
        if x is None and "hidden_states" in rec.fields:
            name = "hidden_states"
        if self.kind == "learned" and not self.only:
            x = F.float_tensor(rec, "inputs_embeds")
            mask = F.int_vector(rec, "attention_mask", required=False)
            types = F.int_vector(rec, "token_type_ids", required=False)
            ids = F.int_vector(rec, "input_ids", required=False)
            n = len(x)
            if self.max_len and n > self.max_len:
                raise ItemError(f"{n} positions, more than the model's max_position_embeddings {self.max_len}", "too-long")
            for v, label in ((mask, "attention_mask"), (types, "token_type_ids"), (ids, "input_ids")):
                if v is not None and len(v) != n:
                    raise ItemError(f"{label} has {len(v)} entries but inputs_embeds has {n} rows", "bad-shape")
            return rec, x, mask if mask is not None else np.ones(n, np.int64), types if types is not None else np.zeros(n, np.int64), ids
        x = F.float_tensor(rec, name)
        return rec, x, None, None, None

    def run(self, items: list) -> list[dict]:
        if self.kind == "learned" and not self.only:
            return self._run_model(items)
        out = []
        for rec, x, _, _, _ in items:
            pe = self.encoding(len(x), x.shape[1])
            if pe.shape != x.shape:
                raise ItemError(f"the model's position table is {pe.shape[1]} wide but the input is {x.shape[1]}", "bad-shape")
            fields = F.passthrough(rec, drop=("inputs_embeds", "hidden_states", "seam"))
            if self.only:
                fields["position_encoding"] = pe
            else:
                fields["hidden_states"] = x + pe
            out.append(fields)
        return out

    def _run_model(self, items: list) -> list[dict]:
        states = pad_states([x for _, x, _, _, _ in items])
        b, t = states.shape[:2]
        mask = np.zeros((b, t), np.int64)
        types = np.zeros((b, t), np.int64)
        ids = np.zeros((b, t), np.int64)
        for k, (_, x, m, ty, i) in enumerate(items):
            mask[k, : len(x)], types[k, : len(x)] = m, ty
            if i is not None:
                ids[k, : len(x)] = i
        h = self.piece.run({"embeddings.word": states, "attention_mask": mask, "token_type_ids": types,
                            "input_ids": ids})["embeddings.output"]
        out = []
        for k, (rec, x, _, _, _) in enumerate(items):
            fields = F.passthrough(rec, drop=("inputs_embeds", "hidden_states", "seam"))
            fields["hidden_states"] = np.ascontiguousarray(h[k, : len(x)])
            fields["seam"] = "layers.0.input"
            out.append(fields)
        return out


# ----------------------------------------------------------------------- states in, states out


@dataclass
class StateItem:
    record: Record
    states: np.ndarray  # (T, D)
    mask: np.ndarray  # (T,)
    seam: str
    token: TokenItem | None = None


def state_item(rec: Record, seam_default: str | None, force_seam: str | None, width: int | None = None) -> StateItem:
    x = F.float_tensor(rec, "hidden_states")
    seam = force_seam or rec.fields.get("seam") or seam_default
    if seam is not None and not isinstance(seam, str):
        raise ItemError("field 'seam' must be a string like 'layers.0.input'", "bad-type")
    mask = F.int_vector(rec, "attention_mask", required=False)
    if mask is None:
        mask = np.ones(len(x), np.int64)
    if len(mask) != len(x):
        raise ItemError(f"attention_mask has {len(mask)} entries but hidden_states has {len(x)} rows", "bad-shape")
    if width is not None and x.shape[1] != width:
        raise ItemError(f"hidden_states must have shape (T, {width}) for this model, got {x.shape}", "bad-shape")
    if len(x) == 0:
        raise ItemError("hidden_states has no rows", "empty")
    return StateItem(rec, x, mask, seam)


class StatePieces:
    """One cut graph per starting seam, built on first use."""

    def __init__(self, model: ModelDir, engine: Engine, end: list[str]):
        self.model, self.engine, self.end = model, engine, end
        self.pieces: dict[str, Piece] = {}
        self.info = graph.seams(model.onnx())

    def check(self, seam: str) -> None:
        if seam not in self.info["seams"]:
            known = ", ".join(k for k in self.info["seams"] if k.endswith((".input", ".add_norm")))
            raise ItemError(f"unknown seam {seam!r}; this model's are {known}", "bad-seam")

    def run(self, items: list[StateItem]) -> list[dict[str, np.ndarray]]:
        """Per item, the end tensors (batch padding removed), grouped by seam."""
        results: list[dict[str, np.ndarray] | None] = [None] * len(items)
        for seam in dict.fromkeys(it.seam for it in items):
            idx = [k for k, it in enumerate(items) if it.seam == seam]
            piece = self.pieces.get(seam)
            if piece is None:
                piece = self.pieces[seam] = Piece(self.model, self.engine, [seam], self.end)
            group = [items[k] for k in idx]
            states = pad_states([it.states for it in group])
            mask = np.zeros(states.shape[:2], np.int64)
            for j, it in enumerate(group):
                mask[j, : len(it.states)] = it.mask
            outs = piece.run({seam: states, "attention_mask": mask})
            for j, k in enumerate(idx):
                t = len(items[k].states)
                results[k] = {name: _strip(arr[j], t) for name, arr in outs.items()}
        return results  # type: ignore[return-value]


def _strip(arr: np.ndarray, t: int) -> np.ndarray:
    """Cut batch padding from every sequence axis of one item's tensor: (T', D) or (H, T', T')."""
    if arr.ndim == 2:
        return np.ascontiguousarray(arr[:t])
    if arr.ndim == 3:
        return np.ascontiguousarray(arr[:, :t, :t])
    return arr


# ----------------------------------------------------------------------- attend (model mode)


class ModelAttendStage:
    """`tfm attend --model M --layer L`: layer L's own self-attention on incoming hidden states."""

    def __init__(self, model: ModelDir, engine: Engine, layer: int | None, add_norm: bool):
        self.info = graph.seams(model.onnx())
        n = self.info["layers"]
        if layer is not None and not 0 <= layer < n:
            raise FatalError(f"--layer must be 0..{n - 1} for model {model.name}")
        self.layer, self.add_norm, self.model, self.engine = layer, add_norm, model, engine
        self.pieces: dict[int, Piece] = {}
        self.width = model.config.get("hidden_size")

    def piece(self, layer: int) -> Piece:
        if layer not in self.pieces:
            p = f"layers.{layer}"
            end = [f"{p}.attention.probs", f"{p}.attention.output"] + ([f"{p}.attention.add_norm"] if self.add_norm else [])
            self.pieces[layer] = Piece(self.model, self.engine, [f"{p}.input"], end)
        return self.pieces[layer]

    def prepare(self, rec: Record) -> tuple[StateItem, int]:
        item = state_item(rec, None, None, self.width)
        heads = self.model.config.get("num_attention_heads", 1)
        check_memory(1, heads, len(item.states), len(item.states))
        from_record = seam_layer(rec.fields.get("seam"))
        if rec.fields.get("seam") is not None and from_record is None:
            raise ItemError(f"record holds {rec.fields['seam']!r}, not a layer's input; attention needs layers.L.input",
                            "bad-seam")
        layer = self.layer if self.layer is not None else from_record
        if layer is None:
            raise ItemError("no --layer given and the record has no seam saying which layer it enters", "missing-field")
        if from_record is not None and from_record != layer:
            raise ItemError(f"record holds the input of layer {from_record}, not layer {layer}", "bad-seam")
        return item, layer

    def run(self, items: list[tuple[StateItem, int]]) -> list[dict]:
        out: list[dict | None] = [None] * len(items)
        for layer in dict.fromkeys(l for _, l in items):
            idx = [k for k, (_, l) in enumerate(items) if l == layer]
            group = [items[k][0] for k in idx]
            states = pad_states([it.states for it in group])
            mask = np.zeros(states.shape[:2], np.int64)
            for j, it in enumerate(group):
                mask[j, : len(it.states)] = it.mask
            p = f"layers.{layer}"
            res = self.piece(layer).run({f"{p}.input": states, "attention_mask": mask})
            for j, k in enumerate(idx):
                it, t = group[j], len(group[j].states)
                fields = F.passthrough(it.record, drop=("attentions", "attention_output"))
                fields["attention_output"] = _strip(res[f"{p}.attention.output"][j], t)
                fields["attentions"] = _strip(res[f"{p}.attention.probs"][j], t)
                if self.add_norm:
                    fields["hidden_states"] = _strip(res[f"{p}.attention.add_norm"][j], t)
                    fields["seam"] = f"{p}.attention.add_norm"
                else:
                    fields.setdefault("seam", f"{p}.input")
                out[k] = fields
        return out  # type: ignore[return-value]

