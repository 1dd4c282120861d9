"""Encoder-decoder generation over raw ONNX graphs (Optimum seq2seq exports), without PyTorch.

The encoder runs once per batch of sentences.  The decoder then runs one
token at a time: masked (causal) self-attention over what has been generated
so far, and cross-attention whose queries come from the decoder and whose
keys and values come from the encoder's output.  With a cache the decoder's
own keys/values roll forward each step and the encoder's cross-attention
keys/values are computed once, on the first step.

Greedy and beam search follow Hugging Face ``generate()`` (transformers 4.5x)
step for step, so the output ids are the same: logits processors for bad
words, forced BOS/EOS and no-repeat n-grams; beam search keeps
``max(2, 1 + n_eos) · beams`` candidates, finished hypotheses are scored
``sum(log p) / generated_len ** length_penalty``, and a sentence stops when
no running beam can beat its worst finished one (``early_stopping=False``).
Finished sentences leave the batch, so they stop costing compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfm.core import fields as F
from tfm.core.engine import Engine
from tfm.core.errors import FatalError, ItemError
from tfm.core.modeldir import ModelDir
from tfm.core.stream import Record

NEG_INF = -np.inf
DECODERS = ("auto", "merged", "split", "nocache")


@dataclass
class Settings:
    """Generation settings: generation_config.json, else config.json, else flags."""

    decoder_start: int
    eos: list[int]
    pad: int
    max_length: int
    beams: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram: int = 0
    bad_words: list[list[int]] = field(default_factory=list)
    forced_bos: int | None = None
    forced_eos: int | None = None
    early_stopping: bool | str = False
    min_length: int = 0

    @classmethod
    def from_model(cls, model: ModelDir, **overrides) -> "Settings":
        config = model.config
        gen = model.read_json("generation_config.json")

        def pick(name, default=None):
            value = gen.get(name, config.get(name, default))
            return default if value is None else value

        eos = pick("eos_token_id")
        if eos is None:
            raise FatalError(f"model {model.name}: no eos_token_id in generation_config.json or config.json")
        pad = pick("pad_token_id", eos if isinstance(eos, int) else eos[0])
        start = pick("decoder_start_token_id", pad)
        s = cls(
            decoder_start=int(start), eos=[eos] if isinstance(eos, int) else [int(e) for e in eos], pad=int(pad),
            max_length=int(pick("max_length", 20)), beams=int(pick("num_beams", 1)),
            length_penalty=float(pick("length_penalty", 1.0)), no_repeat_ngram=int(pick("no_repeat_ngram_size", 0)),
            bad_words=[list(map(int, w)) for w in pick("bad_words_ids", []) or []],
            forced_bos=pick("forced_bos_token_id"), forced_eos=pick("forced_eos_token_id"),
            early_stopping=pick("early_stopping", False), min_length=int(pick("min_length", 0)),
        )
        max_new = overrides.pop("max_new_tokens", None)
        for key, value in overrides.items():
            if value is not None:
                setattr(s, key, value)
        if max_new is not None:
            s.max_length = 1 + max_new  # the decoder start token is the prompt
        if s.beams < 1 or s.max_length < 2:
            raise FatalError("--beams must be at least 1 and the maximum length at least 1 new token")
        return s


# ------------------------------------------------------------------------------ decoder graphs


class Decoder:
    """Runs the exported decoder one step at a time, in one of three layouts."""

    def __init__(self, model: ModelDir, engine: Engine, layout: str = "auto", taps: list[str] | None = None):
        if layout not in DECODERS:
            raise FatalError(f"--decoder must be one of {', '.join(DECODERS)}")
        if layout == "auto":
            layout = ("merged" if model.has_onnx("decoder_model_merged.onnx")
                      else "split" if model.has_onnx("decoder_with_past_model.onnx") else "nocache")
        self.layout = layout
        self.taps: list[str] = []

        def load(filename: str):
            path = model.onnx(filename)
            if not taps:
                return engine.session(path)
            from tfm.core.taps import tapped_decoder

            blob, self.taps = tapped_decoder(path, taps)
            return engine.session(blob, key=f"{path}:taps:{sorted(self.taps)}", optimize=False)

        if layout == "merged":
            self.first = self.later = load("decoder_model_merged.onnx")
        elif layout == "split":
            self.first = load("decoder_model.onnx")
            self.later = load("decoder_with_past_model.onnx")
        else:
            self.first = self.later = load("decoder_model.onnx")
        self.inputs = {i.name: i for i in self.later.get_inputs()}
        self.first_inputs = {i.name for i in self.first.get_inputs()}
        self.past_names = sorted(n for n in self.inputs if n.startswith("past_key_values."))
        self.outputs = [o.name for o in self.first.get_outputs()]

    def _empty_past(self, rows: int) -> dict[str, np.ndarray]:
        out = {}
        for name in self.past_names:
            shape = self.inputs[name].shape  # (B, H, T, d) with H and d fixed
            heads = shape[1] if isinstance(shape[1], int) else 1
            dim = shape[3] if isinstance(shape[3], int) else 1
            out[name] = np.zeros((rows, heads, 0, dim), dtype=np.float32)
        return out

    def step(self, state: dict, ids: np.ndarray) -> np.ndarray:
        """Logits (N, V) for the next token of each row; `ids` (N, t) is everything so far.

        Tapped cross-attention of this step, (N, H, S) per tap, is left in state["tapped"].
        """
        base = {"encoder_attention_mask": state["mask"], "encoder_hidden_states": state["hidden"]}
        if self.layout == "nocache" or "past" not in state:
            feed = {**base, "input_ids": ids}
            if self.layout == "merged":
                feed.update(self._empty_past(len(ids)))
                feed["use_cache_branch"] = np.array([False])
            feed = {k: v for k, v in feed.items() if k in self.first_inputs}
            outs = dict(zip(self.outputs, self.first.run(self.outputs, feed)))
            state["tapped"] = {name: outs[name][:, :, -1] for name in self.taps}
            if self.layout != "nocache":
                state["past"] = {n: outs[n.replace("past_key_values", "present")] for n in self.past_names
                                 if ".decoder." in n}
                state["cross"] = {n: outs[n.replace("past_key_values", "present")] for n in self.past_names
                                  if ".encoder." in n}
            return outs["logits"][:, -1]
        feed = {**base, "input_ids": ids[:, -1:], **state["past"], **state["cross"]}
        if self.layout == "merged":
            feed["use_cache_branch"] = np.array([True])
        names = [o.name for o in self.later.get_outputs()]
        feed = {k: v for k, v in feed.items() if k in self.inputs}
        outs = dict(zip(names, self.later.run(names, feed)))
        state["tapped"] = {name: outs[name][:, :, -1] for name in self.taps}
        # the cached branch returns no (or empty) encoder keys/values: keep the first step's
        state["past"] = {n: outs[n.replace("past_key_values", "present")] for n in state["past"]}
        return outs["logits"][:, -1]

    @staticmethod
    def select(state: dict, rows: np.ndarray) -> dict:
        """The state for a subset or reordering of rows (beam reordering, finished sentences leaving)."""
        out = {"mask": state["mask"][rows], "hidden": state["hidden"][rows]}
        for key in ("past", "cross"):
            if key in state:
                out[key] = {n: v[rows] for n, v in state[key].items()}
        return out


# ------------------------------------------------------------------------------ logits processors


def process(logits: np.ndarray, seqs: np.ndarray, s: Settings) -> np.ndarray:
    """The logits processors generate() applies for these settings, in place on (N, V)."""
    cur_len = seqs.shape[1]
    if s.no_repeat_ngram and cur_len + 1 >= s.no_repeat_ngram:
        n = s.no_repeat_ngram
        for row, seq in enumerate(seqs.tolist()):
            prefix = tuple(seq[cur_len - n + 1:]) if n > 1 else ()
            banned = [seq[i + n - 1] for i in range(cur_len - n + 1) if tuple(seq[i:i + n - 1]) == prefix]
            logits[row, banned] = NEG_INF
    for word in s.bad_words:
        if len(word) == 1:
            logits[:, word[0]] = NEG_INF
        else:
            for row, seq in enumerate(seqs.tolist()):
                if seq[len(seq) - len(word) + 1:] == word[:-1]:
                    logits[row, word[-1]] = NEG_INF
    if s.min_length and cur_len < s.min_length:
        logits[:, s.eos] = NEG_INF
    if s.forced_bos is not None and cur_len == 1:
        logits[:] = NEG_INF
        logits[:, s.forced_bos] = 0
    if s.forced_eos is not None and cur_len == s.max_length - 1:
        logits[:] = NEG_INF
        logits[:, s.forced_eos] = 0
    return logits


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first, ties in index order: argsort's stable order, without sorting all."""
    if k >= scores.size:
        return np.argsort(-scores, kind="stable")
    threshold = np.partition(scores, scores.size - k)[scores.size - k]
    candidates = np.flatnonzero(scores >= threshold)  # k or more when the k-th value is tied
    return candidates[np.argsort(-scores[candidates], kind="stable")][:k]


def is_eos(tokens: np.ndarray, eos: list[int]) -> np.ndarray:
    return (tokens[..., None] == np.asarray(eos)).any(-1)


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------ search


@dataclass
class Result:
    ids: list[int]  # with the decoder start token, ending in eos unless cut by max_length
    score: float
    taps: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (H, generated, S)


def _grow(history: dict[str, np.ndarray] | None, rows: np.ndarray, tapped: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-row tap histories (N, H, steps, S), reordered by `rows`, with this step's (N, H, S) appended."""
    out = {}
    for name, now in tapped.items():
        step = now[rows][:, :, None, :]
        out[name] = step if history is None else np.concatenate([history[name][rows], step], axis=2)
    return out


def greedy(decoder: Decoder, state: dict, n: int, s: Settings) -> list[Result]:
    seqs = np.full((n, 1), s.decoder_start, dtype=np.int64)
    done: list[Result | None] = [None] * n
    alive = np.arange(n)  # sentence index of each row still decoding
    sums = np.zeros(n)
    history = None
    while len(alive):
        logits = decoder.step(state, seqs).astype(np.float32)
        if decoder.taps:
            history = _grow(history, np.arange(len(alive)), state["tapped"])
        logp = log_softmax(logits)
        scores = process(logits.copy(), seqs, s)
        nxt = scores.argmax(-1)
        sums += logp[np.arange(len(nxt)), nxt]
        seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
        finished = is_eos(nxt, s.eos) | (seqs.shape[1] >= s.max_length)
        for row in np.flatnonzero(finished):
            length = seqs.shape[1] - 1
            taps = {k: v[row] for k, v in history.items()} if history else {}
            done[alive[row]] = Result(seqs[row].tolist(), float(sums[row] / length ** s.length_penalty), taps)
        keep = np.flatnonzero(~finished)
        if len(keep) < len(alive):
            alive, seqs, sums = alive[keep], seqs[keep], sums[keep]
            if history:
                history = {k: v[keep] for k, v in history.items()}
            if len(keep):
                state = decoder.select(state, keep)
    return done  # type: ignore[return-value]


class _Beams:
    """One sentence's beam search state, as generate() keeps it."""

    def __init__(self, s: Settings):
        k = s.beams
        self.s = s
        self.running = np.full((k, 1), s.decoder_start, dtype=np.int64)
        self.running_scores = np.zeros(k)
        self.running_scores[1:] = -1e9
        self.finished: list[tuple[float, list[int], dict]] = []  # (normalised score, ids with eos, taps)
        self.open = True
        self.history: dict[str, np.ndarray] | None = None  # running beams' tap histories

    def advance(self, logp: np.ndarray, tapped: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Take (k, V) processed log-probs; returns which running beams the next step continues from."""
        s, k = self.s, self.s.beams
        cur_len = self.running.shape[1]
        vocab = logp.shape[1]
        total = (logp + self.running_scores[:, None]).reshape(-1)
        keep = max(2, 1 + len(s.eos)) * k
        order = top(total, keep)
        # torch.topk's order among exact ties is not specified; ties of distinct candidates are rare
        cand_scores = total[order]
        cand_beams, cand_tokens = order // vocab, order % vocab
        hits = is_eos(cand_tokens, s.eos) | (cur_len + 1 >= s.max_length)
        grown = _grow(self.history, cand_beams, tapped) if tapped else {}
        # finished hypotheses: only those ranked within the top k
        if self.open:
            for rank in range(k):
                if hits[rank] and np.isfinite(cand_scores[rank]):
                    ids = self.running[cand_beams[rank]].tolist() + [int(cand_tokens[rank])]
                    norm = cand_scores[rank] / (cur_len ** s.length_penalty)
                    self.finished.append((float(norm), ids, {n: v[rank] for n, v in grown.items()}))
            self.finished.sort(key=lambda x: -x[0])
            del self.finished[k:]
        # running beams: the best k candidates that did not finish
        live = np.where(hits, cand_scores - 1e9, cand_scores)
        pick = top(live, k)
        beams = cand_beams[pick]
        self.running = np.concatenate([self.running[beams], cand_tokens[pick][:, None]], axis=1)
        self.running_scores = live[pick]
        if grown:
            self.history = {n: v[pick] for n, v in grown.items()}
        # stop when no running beam can beat the worst finished one
        cur_len += 1
        if s.early_stopping == "never" and s.length_penalty > 0:
            best_len = s.max_length - 1
        else:
            best_len = cur_len - 1
        best_possible = self.running_scores[0] / (best_len ** s.length_penalty)
        worst = min(x[0] for x in self.finished) if len(self.finished) == k else -1e9
        if not best_possible > worst or (s.early_stopping is True and len(self.finished) == k):
            self.open = False
        if bool(hits.all()):
            self.open = False
        return beams

    def best(self) -> Result:
        if not self.finished:  # cannot happen: max_length always finishes the top beams
            raise ItemError("beam search found no finished hypothesis", "no-result")
        score, ids, taps = self.finished[0]
        return Result(ids, score, taps)


def beam_search(decoder: Decoder, state: dict, n: int, s: Settings) -> list[Result]:
    k = s.beams
    rows = np.repeat(np.arange(n), k)
    state = decoder.select(state, rows)  # each sentence's encoder output once per beam
    searches = [_Beams(s) for _ in range(n)]
    alive = list(range(n))
    done: list[Result | None] = [None] * n
    while alive:
        seqs = np.concatenate([searches[i].running for i in alive])  # (len(alive)·k, t)
        logits = decoder.step(state, seqs).astype(np.float32)
        logp = process(log_softmax(logits), seqs, s)
        next_rows = []
        still = []
        for j, i in enumerate(alive):
            tapped = {n: v[j * k:(j + 1) * k] for n, v in state.get("tapped", {}).items()}
            beams = searches[i].advance(logp[j * k:(j + 1) * k], tapped)
            if searches[i].open:
                still.append(i)
                next_rows.extend(j * k + beams)
            else:
                done[i] = searches[i].best()
        alive = still
        if alive:
            state = decoder.select(state, np.array(next_rows))
    return done  # type: ignore[return-value]


# ------------------------------------------------------------------------------ the command's stage


@dataclass
class Source:
    record: Record
    ids: np.ndarray | None  # None: an empty line, translated to an empty line
    text: str | None


class TranslateStage:
    """`tfm translate`: text (or token records) in, translation out."""

    def __init__(self, model: ModelDir, engine: Engine, settings: Settings, *, decoder: str = "auto",
                 truncate: bool = False, taps: list[str] | None = None):
        self.model, self.s = model, settings
        self.encoder = engine.session(model.onnx("encoder_model.onnx"))
        self.encoder_inputs = {i.name for i in self.encoder.get_inputs()}
        self.decoder = Decoder(model, engine, decoder, taps)
        self.tok = model.tokenizer
        self.truncate = truncate
        self.max_source = model.config.get("max_position_embeddings")
        self.vocab = model.config.get("vocab_size")

    def prepare(self, rec: Record) -> Source:
        ids = F.int_vector(rec, "input_ids", required=False)
        text = F.text(rec)
        if ids is None:
            if text is None:
                raise F.missing(rec, "text", "input_ids")
            if not text.strip():
                return Source(rec, None, text)
            [enc] = self.tok.encode([text], special_tokens=True)
            ids = enc["input_ids"]
        if self.vocab is not None and ids.size and (ids.min() < 0 or ids.max() >= self.vocab):
            bad = ids[(ids < 0) | (ids >= self.vocab)][0]
            raise ItemError(f"token id {int(bad)} is outside the vocabulary (size {self.vocab})", "bad-id")
        if self.max_source and len(ids) > self.max_source:
            if not self.truncate:
                raise ItemError(f"{len(ids)} source tokens, more than the model's max_position_embeddings "
                                f"{self.max_source}; pass --truncate to cut", "too-long")
            ids = np.r_[ids[: self.max_source - 1], ids[-1:]]  # keep the final </s>
        return Source(rec, ids, text)

    def encode(self, sources: list[Source]) -> dict:
        width = max(len(x.ids) for x in sources)
        ids = np.full((len(sources), width), self.s.pad, dtype=np.int64)
        mask = np.zeros((len(sources), width), dtype=np.int64)
        for b, x in enumerate(sources):
            ids[b, : len(x.ids)] = x.ids
            mask[b, : len(x.ids)] = 1
        feed = {k: v for k, v in {"input_ids": ids, "attention_mask": mask}.items() if k in self.encoder_inputs}
        hidden = self.encoder.run(["last_hidden_state"], feed)[0]
        return {"hidden": hidden, "mask": mask}

    def run(self, items: list[Source]) -> list[dict]:
        work = [x for x in items if x.ids is not None]
        results: dict[int, Result] = {}
        if work:
            state = self.encode(work)
            search = beam_search if self.s.beams > 1 else greedy
            for x, r in zip(work, search(self.decoder, state, len(work), self.s)):
                results[id(x)] = r
        out = []
        for x in items:
            fields: dict[str, Any] = F.passthrough(x.record, drop=("translation", "output_ids", "output_tokens", "score"))
            r = results.get(id(x))
            if r is None:
                fields.update({"translation": "", "output_ids": np.zeros(0, np.int64), "output_tokens": [], "score": 0.0})
            else:
                ids = np.asarray(r.ids, dtype=np.int64)
                fields["translation"] = self.tok.tok.decode(r.ids, skip_special_tokens=True)
                fields["output_ids"] = ids
                fields["output_tokens"] = self.tok.tokens_of(ids)
                fields["score"] = round(r.score, 6)
                for name, probs in r.taps.items():  # (H, generated, S), the sentence's own source length
                    fields[name] = np.ascontiguousarray(probs[:, :, : len(x.ids)])
            out.append(fields)
        return out
