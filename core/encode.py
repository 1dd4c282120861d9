"""The encoder forward pass: token ids (or text) to ``last_hidden_state``.

Records of different lengths are padded into one batch and the padding is cut
off again, so a record's result never depends on its batch companions beyond
float rounding (tests hold it to 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tfm.core import fields as F
from tfm.core.engine import Engine
from tfm.core.errors import FatalError, ItemError
from tfm.core.modeldir import ModelDir
from tfm.core.stream import Record

POOLS = ("cls", "mean", "max")
PER_TOKEN = ("tokens", "input_ids", "offsets", "attention_mask", "special_tokens_mask", "token_type_ids")


def _length(value) -> int:
    return len(value) if isinstance(value, (list, np.ndarray)) else -1


def _take(value, keep: np.ndarray):
    if isinstance(value, np.ndarray):
        return value[keep]
    return [value[i] for i in keep]


@dataclass
class TokenItem:
    record: Record
    ids: np.ndarray  # (T,)
    mask: np.ndarray  # (T,)
    types: np.ndarray  # (T,)
    extra: dict[str, Any]  # fields made here (tokenized on the fly)


def pool(hidden: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """A sentence vector from token vectors (T, D) -> (D,), padding ignored."""
    keep = mask.astype(bool)
    if not keep.any():
        raise ItemError("no unmasked token to pool", "empty")
    if how == "cls":
        return hidden[0].copy()
    if how == "mean":
        w = keep.astype(np.float32)[:, None]
        return (hidden * w).sum(0) / w.sum()
    if how == "max":
        return hidden[keep].max(0)
    raise ValueError(how)


def l2_normalize(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n == 0.0:
        raise ItemError("zero vector cannot be normalized", "bad-value")
    return (v / n).astype(np.float32)


class TokenInputs:
    """Checks and batches token records for a text model (shared by encode and the stages)."""

    def __init__(self, model: ModelDir, *, truncate: bool = False, special_tokens: bool = True):
        self.model = model
        self.truncate = truncate
        self.special_tokens = special_tokens
        self.max_len = model.max_positions
        self.vocab_size = model.config.get("vocab_size")
        self.pad_id = model.config.get("pad_token_id") or 0

    def item(self, rec: Record) -> TokenItem:
        extra: dict[str, Any] = {}
        ids = F.int_vector(rec, "input_ids", required=False)
        if ids is None:
            text = F.text(rec)
            if text is None:
                raise F.missing(rec, "input_ids", "text")
            pair = F.text(rec, "text_pair")
            [enc] = self.model.tokenizer.encode(
                [text], [pair] if pair is not None else None, special_tokens=self.special_tokens,
                max_length=self.max_len if self.truncate else None, truncate=self.truncate,
            )
            if isinstance(enc, ItemError):
                raise enc
            extra = enc
            ids = enc["input_ids"]
        mask = F.int_vector(rec, "attention_mask", required=False)
        types = F.int_vector(rec, "token_type_ids", required=False)
        if "attention_mask" in extra:
            mask, types = extra["attention_mask"], extra["token_type_ids"]
        mask = np.ones_like(ids) if mask is None else mask
        types = np.zeros_like(ids) if types is None else types
        if not (len(mask) == len(types) == len(ids)):
            raise ItemError(
                f"input_ids ({len(ids)}), attention_mask ({len(mask)}) and token_type_ids ({len(types)}) differ in length",
                "bad-shape",
            )
        if len(ids) == 0:
            raise ItemError("no tokens to encode", "empty")
        if self.vocab_size is not None:
            bad = ids[(ids < 0) | (ids >= self.vocab_size)]
            if bad.size:
                raise ItemError(f"token id {int(bad[0])} is outside the vocabulary (size {self.vocab_size})", "bad-id")
        if self.max_len is not None and len(ids) > self.max_len:
            if not self.truncate:
                raise ItemError(
                    f"{len(ids)} tokens, more than the model's max_position_embeddings {self.max_len}; "
                    "pass --truncate to cut",
                    "too-long",
                )
            n0, keep = len(ids), self._keep(rec, ids, extra)
            ids, mask, types = ids[keep], mask[keep], types[keep]
            # every per-token field of the record is cut the same way
            source = {**rec.fields, **extra}
            extra.update({k: _take(v, keep) for k, v in source.items() if k in PER_TOKEN and _length(v) == n0})
        return TokenItem(rec, ids, mask, types, extra)

    def _keep(self, rec: Record, ids, extra) -> np.ndarray:
        """Indices kept when cutting to max_len: the final special token ([SEP], </s>) stays."""
        n = self.max_len
        special = extra.get("special_tokens_mask")
        if special is None:
            special = F.int_vector(rec, "special_tokens_mask", required=False)
        if special is not None and len(special) == len(ids) and special[-1]:
            return np.r_[np.arange(n - 1), len(ids) - 1]
        return np.arange(n)

    def batch(self, items: list[TokenItem]) -> dict[str, np.ndarray]:
        """Padded (B, T) arrays for the graph."""
        width = max(len(it.ids) for it in items)
        ids = np.full((len(items), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=np.int64)
        types = np.zeros((len(items), width), dtype=np.int64)
        for b, it in enumerate(items):
            n = len(it.ids)
            ids[b, :n], mask[b, :n], types[b, :n] = it.ids, it.mask, it.types
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class EncodeStage:
    """`tfm encode`: the model's full forward pass from token ids."""

    def __init__(self, model: ModelDir, engine: Engine, *, pool: str | None = None, normalize: bool = False,
                 truncate: bool = False, hidden: bool = True, from_layer: int | None = None,
                 taps: list[str] | None = None):
        if pool is not None and pool not in POOLS:
            raise FatalError(f"--pool must be one of {', '.join(POOLS)}")
        if normalize and pool is None:
            raise FatalError("--normalize needs --pool (it normalizes the sentence vector)")
        if not hidden and pool is None:
            raise FatalError("--no-hidden needs --pool, or nothing would be computed")
        self.model = model
        self.inputs = TokenInputs(model, truncate=truncate)
        self.taps: dict[str, str] = {}
        self.engine, self._session = engine, None
        path = model.onnx()
        if taps:
            from tfm.core import taps as T

            self.taps = {name: entry["tensor"] for name, entry in T.select(path, taps).items()}
        try:  # the graph's inputs and outputs without building a session (records from posenc need none)
            from tfm.core import graph

            info = graph.seams(path)
            inputs, outs = info["inputs"], info["outputs"]
        except FatalError:  # not a graph tfm can take apart (e.g. fused attention): it can still run whole
            inputs = [i.name for i in self.session.get_inputs()]
            outs = [o.name for o in self.session.get_outputs()]
        self.feed_names = set(inputs)
        # an image model's encoder starts from the records of `tfm patchify --project`
        self.vision = "pixel_values" in self.feed_names
        unknown = self.feed_names - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown and not self.vision:
            raise FatalError(f"model {model.name}: unexpected graph inputs {sorted(unknown)}; is it a feature-extraction export?")
        self.output = "last_hidden_state" if "last_hidden_state" in outs else outs[0]
        self.pool, self.normalize, self.hidden = pool, normalize, hidden
        self.from_layer, self._states = from_layer, None
        self.width = model.config.get("hidden_size")
        if self.taps and self.vision:
            raise FatalError("--tap on an image model belongs to tfm classify")
        if self.taps:
            from tfm.core.taps import sequence_axes

            tensors = list(self.taps.values())
            self.tap_axes = sequence_axes(self.session.run, tensors, self._probe_feed)

    @property
    def session(self):
        """The whole model (with taps added), built on first use."""
        if self._session is None:
            path = self.model.onnx()
            if self.taps:
                from tfm.core import taps as T

                blob, key = T.tapped_graph(path, list(self.taps.values()))
                # no fusions: the tapped tensors must exist exactly as exported
                self._session = self.engine.session(blob, key=f"{path}:{key}", optimize=False)
            else:
                self._session = self.engine.session(path)
        return self._session

    def _probe_feed(self, length: int) -> dict[str, np.ndarray]:
        ids = np.full((1, length), self.inputs.pad_id, dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return {k: v for k, v in feed.items() if k in self.feed_names}

    def states(self):
        """Cut graphs that start inside the model, for records that carry hidden_states."""
        if self._states is None:
            from tfm.core.stages import StatePieces

            self._states = StatePieces(self.model, self.engine, ["last_hidden_state"])
            if self.from_layer is not None and not 0 <= self.from_layer < self._states.info["layers"]:
                raise FatalError(f"--from-layer must be 0..{self._states.info['layers'] - 1}")
        return self._states

    def prepare(self, rec: Record):
        if "hidden_states" in rec.fields or rec.bare or self.from_layer is not None:
            from tfm.core.stages import state_item

            if self.taps:
                raise ItemError("--tap needs token records (input_ids or text), not hidden_states", "bad-input")
            force = f"layers.{self.from_layer}.input" if self.from_layer is not None else None
            item = state_item(rec, "layers.0.input", force, self.width)
            self.states().check(item.seam)
            return item
        if self.vision:
            raise F.missing(rec, "hidden_states")
        return self.inputs.item(rec)

    def forward(self, items: list[TokenItem]) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """(B, T, D) last hidden states, and each item's tapped tensors (padding cut off)."""
        feed = {k: v for k, v in self.inputs.batch(items).items() if k in self.feed_names}
        outs = self.session.run([self.output] + list(self.taps.values()), feed)
        tapped: list[dict[str, np.ndarray]] = [{} for _ in items]
        if self.taps:
            from tfm.core.taps import strip

            for (name, tensor), arr in zip(self.taps.items(), outs[1:]):
                for b, it in enumerate(items):
                    tapped[b][name] = strip(arr[b], self.tap_axes[tensor], len(it.ids))
        return outs[0], tapped

    def run(self, items: list) -> list[dict]:
        tokens = [k for k, it in enumerate(items) if isinstance(it, TokenItem)]
        states = [k for k, it in enumerate(items) if not isinstance(it, TokenItem)]
        hidden: list[np.ndarray | None] = [None] * len(items)
        tapped: list[dict] = [{} for _ in items]
        if tokens:
            batch, taps = self.forward([items[k] for k in tokens])
            for j, k in enumerate(tokens):
                hidden[k] = np.ascontiguousarray(batch[j, : len(items[k].ids)])  # (T, D), batch padding cut off
                tapped[k] = taps[j]
        if states:
            for k, res in zip(states, self.states().run([items[k] for k in states])):
                hidden[k] = res["last_hidden_state"]
        out = []
        for it, h, tap in zip(items, hidden, tapped):
            fields = F.passthrough(it.record, drop=("inputs_embeds", "hidden_states", "seam", "attentions",
                                                    "attention_output"))
            if isinstance(it, TokenItem):
                fields.update(it.extra)
            if self.hidden:
                fields["last_hidden_state"] = h
            if self.pool:
                v = pool(h, it.mask, self.pool)
                fields["sentence_embedding"] = l2_normalize(v) if self.normalize else v
            fields.update(tap)
            out.append(fields)
        return out
