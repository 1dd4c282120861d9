#!/usr/bin/env python3
"""Train, export and score tfm's small Marian translation models (en<->zh_CN).

Build-time only: needs torch, transformers, tokenizers, optimum-onnx
(``optimum-cli``), onnx, onnxruntime, sacrebleu and numpy. Nothing here is
imported by tfm at run time.

The corpus comes from ``models/recipes/gettext_corpus.py`` (human translations in
the gettext catalogs of Debian packages; TSV splits under /work/train/corpus).

Subcommands (run in this order; see the model cards for the exact sequence)::

    # 1. one shared Unigram tokenizer for both directions (train split only)
    python models/recipes/marian_gettext.py tokenizer
    # 2. train (time budget in minutes; checkpoints every few minutes; resumable;
    #    RUNS below lists the exact commands behind the shipped models)
    nice -n 19 python models/recipes/marian_gettext.py train --direction en-zh --minutes 35
    nice -n 19 python models/recipes/marian_gettext.py train --direction en-zh --minutes 35 --resume
    # 3. export the best checkpoint with Optimum, store weights as fp16 + Cast,
    #    score the ONNX graphs on the test split and write the model folder
    python models/recipes/marian_gettext.py export --direction en-zh

Training uses one thread unless TFM_TRAIN_THREADS says more; on a shared machine
run it with ``nice``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from all_minilm_l6_v2 import sha256, to_fp16_storage  # noqa: E402  (shared by the recipes)

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path("/work/train/corpus")
WORK = Path("/work/train")
TOKENIZER_DIR = WORK / "tokenizer"

VOCAB_SIZE = 8000
MAX_LEN = 64  # tokens, training and the tokenizer's model_max_length is MAX_POS
MAX_POS = 256
SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2

MODEL_CONFIG = dict(
    d_model=256,
    encoder_layers=3,
    decoder_layers=3,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=1024,
    decoder_ffn_dim=1024,
    max_position_embeddings=MAX_POS,
    scale_embedding=True,
    share_encoder_decoder_embeddings=True,
    tie_word_embeddings=True,
    activation_function="swish",
    dropout=0.1,
    attention_dropout=0.0,
    activation_dropout=0.0,
    pad_token_id=PAD_ID,
    decoder_start_token_id=PAD_ID,
    eos_token_id=EOS_ID,
    forced_eos_token_id=EOS_ID,
    bos_token_id=PAD_ID,
    max_length=128,
    num_beams=4,
)
GENERATION_CONFIG = dict(
    decoder_start_token_id=PAD_ID,
    eos_token_id=EOS_ID,
    pad_token_id=PAD_ID,
    forced_eos_token_id=EOS_ID,
    bad_words_ids=[[PAD_ID]],
    num_beams=4,
    max_length=128,
)


# =========================================================================== data


def read_tsv(name: str) -> list[tuple[str, str, str]]:
    rows = []
    with open(CORPUS / f"{name}.tsv", encoding="utf-8") as f:
        for line in f:
            en, zh, dom = line.rstrip("\n").split("\t")
            rows.append((en, zh, dom))
    return rows


def pairs_for(direction: str, name: str) -> list[tuple[str, str]]:
    rows = read_tsv(name)
    if direction == "en-zh":
        return [(en, zh) for en, zh, _ in rows]
    if direction == "zh-en":
        return [(zh, en) for en, zh, _ in rows]
    raise ValueError(direction)


# =========================================================================== tokenizer


def build_tokenizer(out: Path = TOKENIZER_DIR) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    rows = read_tsv("train")
    texts = [en for en, _, _ in rows] + [zh for _, zh, _ in rows]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFC()  # keep fullwidth CJK punctuation as it is
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        unk_token="<unk>",
        max_piece_length=12,
        shrinking_factor=0.75,
        n_sub_iterations=2,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", EOS_ID)]
    )
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    write_tokenizer_config(out)

    # coverage check over all splits
    unk = total = 0
    for name in ("train", "dev", "test"):
        for en, zh, _ in read_tsv(name):
            for t in (en, zh):
                ids = tok.encode(t).ids
                unk += ids.count(UNK_ID)
                total += len(ids)
    print(f"tokenizer: vocab {tok.get_vocab_size()}, <unk> {unk} of {total} tokens over all splits")


def write_tokenizer_config(out: Path) -> None:
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_POS,
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    smap = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out / "special_tokens_map.json").write_text(json.dumps(smap, indent=2) + "\n", encoding="utf-8")


def load_hf_tokenizer(folder: Path = TOKENIZER_DIR):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))


# =========================================================================== model


def make_config(vocab_size: int):
    from transformers import MarianConfig

    return MarianConfig(vocab_size=vocab_size, decoder_vocab_size=vocab_size, **MODEL_CONFIG)


def encode_pairs(tok, pairs):
    src = tok([s for s, _ in pairs], add_special_tokens=True)["input_ids"]
    tgt = tok([t for _, t in pairs], add_special_tokens=True)["input_ids"]
    out = []
    for s, t in zip(src, tgt):
        if len(s) > MAX_LEN:
            s = s[: MAX_LEN - 1] + [EOS_ID]
        if len(t) > MAX_LEN:
            t = t[: MAX_LEN - 1] + [EOS_ID]
        out.append((s, t))
    return out


def make_batches(data, max_tokens: int, rng: random.Random):
    """Length-bucketed batches holding at most max_tokens (padded src + tgt)."""
    idx = sorted(range(len(data)), key=lambda i: (len(data[i][0]) + len(data[i][1]), rng.random()))
    batches, cur, cur_max = [], [], 0
    for i in idx:
        m = max(cur_max, len(data[i][0]), len(data[i][1]))
        if cur and m * 2 * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, m = [], max(len(data[i][0]), len(data[i][1]))
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(data, batch):
    import torch

    S = max(len(data[i][0]) for i in batch)
    T = max(len(data[i][1]) for i in batch)
    src = torch.full((len(batch), S), PAD_ID, dtype=torch.long)
    dec_in = torch.full((len(batch), T), PAD_ID, dtype=torch.long)
    labels = torch.full((len(batch), T), -100, dtype=torch.long)
    for r, i in enumerate(batch):
        s, t = data[i]
        src[r, : len(s)] = torch.tensor(s)
        labels[r, : len(t)] = torch.tensor(t)
        dec_in[r, 1 : len(t)] = torch.tensor(t[:-1])  # decoder starts with <pad> (id 0)
    return src, (src != PAD_ID).long(), dec_in, labels


def greedy_torch(model, tok, sources, batch_size=64, max_new=MAX_LEN, num_beams=1):
    import torch

    model.eval()
    out = []
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    res = [None] * len(sources)
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            ids = [order[j] for j in range(b, min(b + batch_size, len(order)))]
            enc = tok([sources[i] for i in ids], return_tensors="pt", padding=True,
                      truncation=True, max_length=MAX_LEN, return_token_type_ids=False)
            gen = model.generate(**enc, num_beams=num_beams, max_new_tokens=max_new, do_sample=False)
            texts = tok.batch_decode(gen, skip_special_tokens=True)
            for i, t in zip(ids, texts):
                res[i] = t.strip()
    model.train()
    return res


def score(hyps, refs, target_lang: str) -> dict:
    import sacrebleu

    tokenize = "zh" if target_lang == "zh" else "13a"
    bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize)
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {"bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2)}


# =========================================================================== training


def save_checkpoint(model, tok_dir: Path, folder: Path, extra: dict | None = None):
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp), safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(tok_dir / name, tmp / name)
    if extra:
        (tmp / "train_info.json").write_text(json.dumps(extra, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def train(args) -> None:
    import torch
    from transformers import GenerationConfig, MarianMTModel

    torch.set_num_threads(int(os.environ.get("TFM_TRAIN_THREADS", "1")))  # one thread unless the machine is free
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    direction = args.direction
    tgt_lang = direction.split("-")[1]
    out = WORK / direction
    out.mkdir(parents=True, exist_ok=True)
    log = open(WORK / f"{direction}.metrics.jsonl", "a")

    tok = load_hf_tokenizer()
    train_data = encode_pairs(tok, pairs_for(direction, "train"))
    dev_pairs = pairs_for(direction, "dev")[: args.dev_n]
    n_tok = sum(len(s) + len(t) for s, t in train_data)
    print(f"[{direction}] train pairs {len(train_data)}, tokens {n_tok}", flush=True)

    state_path = out / "train_state.pt"
    if args.resume and state_path.exists():
        model = MarianMTModel.from_pretrained(str(out / "last"))
        st = torch.load(state_path, weights_only=False)
    elif args.init_from:
        # warm start (e.g. zh-en from the finished en-zh model: same shared vocabulary
        # and tied embeddings); optimizer, schedule and step count start afresh
        model = MarianMTModel.from_pretrained(str(args.init_from))
        print(f"[{direction}] initialised from {args.init_from}", flush=True)
        st = None
    else:
        model = MarianMTModel(make_config(len(tok)))
        st = None
    model.generation_config = GenerationConfig(**GENERATION_CONFIG)
    init_from = str(args.init_from) if args.init_from else (st.get("init_from") if st else None)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{direction}] parameters {n_params:,}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.01)
    step, elapsed, epoch, best, batch_pos = 0, 0.0, 0, -1.0, 0
    budget = args.minutes * 60.0
    if st is not None:
        opt.load_state_dict(st["opt"])
        step, elapsed, epoch, best = st["step"], st["elapsed"], st["epoch"], st["best"]
        batch_pos = st["batch_pos"]
        budget = st.get("budget", budget) if not args.minutes_override else budget
        rng.setstate(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        print(f"[{direction}] resumed at step {step}, {elapsed/60:.1f} min, best dev chrF {best}", flush=True)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=0.1)

    def lr_at(step, frac):
        warm = min(1.0, (step + 1) / args.warmup)
        # linear decay to 5% of the peak over the time budget
        return args.lr * warm * max(0.05, 1.0 - frac)

    batches = make_batches(train_data, args.max_tokens, random.Random(args.seed + epoch))
    model.train()
    t0 = time.time() - elapsed
    last_ckpt = time.time()
    run_loss, run_n = 0.0, 0

    def checkpoint(final=False):
        nonlocal best
        el = time.time() - t0
        hyps = greedy_torch(model, tok, [s for s, _ in dev_pairs])
        sc = score(hyps, [t for _, t in dev_pairs], tgt_lang)
        rec = {"step": step, "epoch": epoch, "minutes": round(el / 60, 2), "dev": sc,
               "train_loss": round(run_loss / max(run_n, 1), 4), "lr": opt.param_groups[0]["lr"],
               "init_from": init_from}
        is_best = sc["chrf"] > best
        if is_best:
            best = sc["chrf"]
            save_checkpoint(model, TOKENIZER_DIR, out / "best", {**rec, "parameters": n_params})
        save_checkpoint(model, TOKENIZER_DIR, out / "last", rec)
        torch.save({"opt": opt.state_dict(), "step": step, "elapsed": time.time() - t0, "epoch": epoch,
                    "best": best, "batch_pos": batch_pos, "budget": budget, "rng": rng.getstate(),
                    "init_from": init_from,
                    "torch_rng": torch.get_rng_state()}, str(state_path) + ".tmp")
        os.replace(str(state_path) + ".tmp", state_path)
        rec["best"] = is_best
        log.write(json.dumps(rec, ensure_ascii=False) + "\n")
        log.flush()
        print(f"[{direction}] ckpt step {step} ep {epoch} {el/60:.1f}min loss {rec['train_loss']} "
              f"dev {sc} {'*best*' if is_best else ''} e.g. {dev_pairs[0][0]!r} -> {hyps[0]!r}", flush=True)

    while True:
        if batch_pos >= len(batches):
            epoch += 1
            batch_pos = 0
            batches = make_batches(train_data, args.max_tokens, random.Random(args.seed + epoch))
        src, mask, dec_in, labels = collate(train_data, batches[batch_pos])
        batch_pos += 1
        frac = (time.time() - t0) / budget
        for g in opt.param_groups:
            g["lr"] = lr_at(step, frac)
        logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=dec_in).logits
        loss = loss_fn(logits.view(-1, logits.size(-1)), labels.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        run_loss += loss.item()
        run_n += 1
        if step % 20 == 0:
            print(f"[{direction}] step {step} ep {epoch} {(time.time()-t0)/60:.1f}min "
                  f"loss {run_loss/run_n:.3f} lr {opt.param_groups[0]['lr']:.2e}", flush=True)
        if time.time() - t0 >= budget:
            checkpoint(final=True)
            break
        if time.time() - last_ckpt >= args.ckpt_minutes * 60:
            checkpoint()
            run_loss, run_n = 0.0, 0
            last_ckpt = time.time()
    print(f"[{direction}] done: {step} steps, {epoch} epochs + {batch_pos}/{len(batches)} batches, "
          f"{(time.time()-t0)/60:.1f} min, best dev chrF {best}", flush=True)


# =========================================================================== ONNX


def dedupe_tied_lm_head(model) -> bool:
    """If the lm_head MatMul weight is exactly the transposed shared embedding, drop it
    and compute it with a Transpose node from the embedding (tied weights stored once)."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    emb = next((n for n in inits if n.startswith("model.shared.weight")), None)
    if emb is None:
        return False
    E = numpy_helper.to_array(inits[emb])
    for name, init in inits.items():
        if name == emb or tuple(init.dims) != E.shape[::-1]:
            continue
        if np.array_equal(numpy_helper.to_array(init), E.T):
            idx = [i.name for i in g.initializer].index(name)
            del g.initializer[idx]
            nodes = [helper.make_node("Transpose", [emb], [name], name=f"{name}_tied_transpose", perm=[1, 0])]
            nodes += list(g.node)
            del g.node[:]
            g.node.extend(nodes)
            return True
    return False


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OnnxMarian:
    """Greedy and beam search over Optimum's encoder_model.onnx + decoder_model_merged.onnx."""

    def __init__(self, folder: Path, threads: int = 1):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.enc = ort_session(folder / "encoder_model.onnx", threads)
        self.dec = ort_session(folder / "decoder_model_merged.onnx", threads)
        cfg = json.loads((folder / "config.json").read_text())
        self.layers = cfg["decoder_layers"]
        self.heads = cfg["decoder_attention_heads"]
        self.head_dim = cfg["d_model"] // self.heads
        gen = json.loads((folder / "generation_config.json").read_text())
        self.start = gen["decoder_start_token_id"]
        self.eos = gen["eos_token_id"]
        self.bad = [w[0] for w in gen.get("bad_words_ids", []) if len(w) == 1]
        self.max_length = gen.get("max_length", 128)

    def encode(self, texts):
        encs = self.tok.encode_batch(texts)
        T = max(min(len(e.ids), MAX_POS) for e in encs)
        ids = np.zeros((len(encs), T), dtype=np.int64)
        mask = np.zeros((len(encs), T), dtype=np.int64)
        for i, e in enumerate(encs):
            x = e.ids[:MAX_POS]
            if len(e.ids) > MAX_POS:
                x[-1] = self.eos
            ids[i, : len(x)] = x
            mask[i, : len(x)] = 1
        (hidden,) = self.enc.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        return hidden, mask

    def _step(self, tokens, hidden, mask, past, enc_kv):
        B = tokens.shape[0]
        feeds = {"input_ids": tokens, "encoder_hidden_states": hidden, "encoder_attention_mask": mask}
        first = past is None
        feeds["use_cache_branch"] = np.array([not first], dtype=bool)
        for i in range(self.layers):
            for kind in ("decoder", "encoder"):
                for kv in ("key", "value"):
                    name = f"past_key_values.{i}.{kind}.{kv}"
                    if first:
                        feeds[name] = np.zeros((B, self.heads, 0, self.head_dim), dtype=np.float32)
                    elif kind == "decoder":
                        feeds[name] = past[(i, kv)]
                    else:
                        feeds[name] = enc_kv[(i, kv)]
        outs = self.dec.run(None, feeds)
        names = [o.name for o in self.dec.get_outputs()]
        res = dict(zip(names, outs))
        new_past = {(i, kv): res[f"present.{i}.decoder.{kv}"] for i in range(self.layers) for kv in ("key", "value")}
        if first:  # the cached branch returns empty encoder key/values: keep the first step's
            enc_kv = {(i, kv): res[f"present.{i}.encoder.{kv}"] for i in range(self.layers) for kv in ("key", "value")}
        return res["logits"][:, -1, :].astype(np.float32), new_past, enc_kv

    def _logprobs(self, logits, cur_len):
        logits = logits.copy()
        for b in self.bad:
            logits[:, b] = -np.inf
        if cur_len == self.max_length - 1:  # forced_eos_token_id
            keep = logits[:, self.eos].copy()
            logits[:] = -np.inf
            logits[:, self.eos] = keep
        m = logits.max(-1, keepdims=True)
        return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))

    def greedy(self, texts):
        hidden, mask = self.encode(texts)
        B = len(texts)
        seqs = np.full((B, 1), self.start, dtype=np.int64)
        done = np.zeros(B, dtype=bool)
        past = enc_kv = None
        for cur in range(1, self.max_length):
            logits, past, enc_kv = self._step(seqs[:, -1:], hidden, mask, past, enc_kv)
            lp = self._logprobs(logits, cur)
            nxt = lp.argmax(-1)
            nxt[done] = self.start  # pad
            seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
            done |= nxt == self.eos
            if done.all():
                break
        return [self.decode(s[1:]) for s in seqs]

    def beam(self, texts, k: int = 4, length_penalty: float = 1.0):
        hidden, mask = self.encode(texts)
        B = len(texts)
        hidden = np.repeat(hidden, k, axis=0)
        mask = np.repeat(mask, k, axis=0)
        seqs = np.full((B * k, 1), self.start, dtype=np.int64)
        scores = np.zeros((B, k), dtype=np.float64)
        scores[:, 1:] = -1e9  # only one live beam at the start
        finished = [[] for _ in range(B)]  # (normalised score, tokens)
        closed = np.zeros(B, dtype=bool)
        past = enc_kv = None
        V = None
        for cur in range(1, self.max_length):
            logits, past, enc_kv = self._step(seqs[:, -1:], hidden, mask, past, enc_kv)
            lp = self._logprobs(logits, cur)
            V = lp.shape[-1]
            cand = (scores.reshape(B * k, 1) + lp).reshape(B, k * V)
            top = np.argsort(-cand, axis=1)[:, : 2 * k]
            new_rows, new_tok, new_scores = [], [], []
            for b in range(B):
                rows, toks, scs = [], [], []
                if not closed[b]:
                    for c in top[b]:
                        beam_i, t = divmod(int(c), V)
                        s = cand[b, c]
                        if not np.isfinite(s) or s < -1e8:
                            continue
                        if t == self.eos:
                            hyp = seqs[b * k + beam_i, 1:].tolist()
                            finished[b].append((s / ((len(hyp) + 1) ** length_penalty), hyp))
                        else:
                            rows.append(b * k + beam_i)
                            toks.append(t)
                            scs.append(s)
                        if len(rows) == k:
                            break
                    finished[b].sort(key=lambda x: -x[0])
                    del finished[b][k:]
                    if len(finished[b]) >= k:
                        best_alive = max(scs) / (cur ** length_penalty) if scs else -np.inf
                        if finished[b][-1][0] >= best_alive:
                            closed[b] = True
                while len(rows) < k:  # closed (or exhausted) sentence: dummy beams
                    rows.append(b * k)
                    toks.append(self.start)
                    scs.append(-1e9)
                new_rows += rows
                new_tok += toks
                new_scores.append(scs)
            if closed.all():
                break
            idx = np.array(new_rows)
            seqs = np.concatenate([seqs[idx], np.array(new_tok, dtype=np.int64)[:, None]], axis=1)
            scores = np.array(new_scores, dtype=np.float64)
            past = {key: v[idx] for key, v in past.items()}
        out = []
        for b in range(B):
            if not finished[b]:  # max length reached without eos: best live beam
                j = int(np.argmax(scores[b]))
                finished[b].append((0.0, seqs[b * k + j, 1:].tolist()))
            out.append(self.decode(finished[b][0][1]))
        return out

    def decode(self, ids):
        ids = [int(i) for i in ids if int(i) not in (self.start, self.eos)]
        return self.tok.decode(ids, skip_special_tokens=True).strip()

    def translate(self, texts, beam: int = 1, batch_size: int = 32):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        res = [None] * len(texts)
        for s in range(0, len(order), batch_size):
            ids = order[s : s + batch_size]
            batch = [texts[i] for i in ids]
            outs = self.greedy(batch) if beam <= 1 else self.beam(batch, beam)
            for i, o in zip(ids, outs):
                res[i] = o
        return res


# =========================================================================== export


def optimum_export(ckpt: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "optimum.commands.optimum_cli", "export", "onnx",
           "--model", str(ckpt), "--task", "text2text-generation-with-past", str(out)]
    print("+ optimum-cli " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        sys.exit(f"error: optimum export failed (exit {proc.returncode})")


SHIPPED = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
           "encoder_model.onnx", "decoder_model_merged.onnx"]


def export(args) -> None:
    import tempfile

    import onnx
    import torch
    from transformers import GenerationConfig, MarianMTModel


    torch.set_num_threads(1)
    direction = args.direction
    src_lang, tgt_lang = direction.split("-")
    ckpt = args.checkpoint or (WORK / direction / "best")
    out_dir = (args.out or (REPO_ROOT / "models" / f"marian-{direction}")).resolve()
    # tokenizer + generation config next to the weights, like a hub folder
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(TOKENIZER_DIR / name, ckpt / name)
    GenerationConfig(**GENERATION_CONFIG).save_pretrained(str(ckpt))
    info = json.loads((ckpt / "train_info.json").read_text())

    test = pairs_for(direction, "test")
    if args.limit:
        test = test[: args.limit]
    srcs, refs = [s for s, _ in test], [t for _, t in test]
    report: dict = {"direction": direction, "checkpoint": str(ckpt), "train": info}

    with tempfile.TemporaryDirectory(prefix=f"tfm-marian-{direction}-") as tmp:
        tmp = Path(tmp)
        optimum_export(ckpt, tmp / "fp32")
        fp32 = tmp / "fp32"
        stage = tmp / "stage"
        stage.mkdir()
        opset = None
        for name in ("encoder_model.onnx", "decoder_model_merged.onnx"):
            m = onnx.load(str(fp32 / name))
            opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
            io = (list(m.graph.input), list(m.graph.output))
            tied = dedupe_tied_lm_head(m) if name.startswith("decoder") else False
            n = to_fp16_storage(m)
            assert (list(m.graph.input), list(m.graph.output)) == io
            onnx.save(m, str(stage / name))
            onnx.checker.check_model(str(stage / name))
            print(f"{name}: {n} fp16 initializers, tied lm_head deduplicated: {tied}, "
                  f"{(fp32 / name).stat().st_size:,} -> {(stage / name).stat().st_size:,} bytes", flush=True)
        shutil.copyfile(fp32 / "config.json" if (fp32 / "config.json").exists() else ckpt / "config.json",
                        stage / "config.json")
        # the tokenizer files as written by this recipe (optimum rewrites them)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(TOKENIZER_DIR / name, stage / name)
        shutil.copyfile(ckpt / "generation_config.json", stage / "generation_config.json")

        dec = onnx.load(str(stage / "decoder_model_merged.onnx"), load_external_data=False)
        def io_desc(vi):
            t = vi.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            return {"name": vi.name, "type": onnx.TensorProto.DataType.Name(t.elem_type).lower(), "shape": dims}
        report["decoder_io"] = {"inputs": [io_desc(v) for v in dec.graph.input],
                                "outputs": [io_desc(v) for v in dec.graph.output]}
        del dec

        # fp32 (plain Optimum export) vs fp16-storage folder, greedy on the whole test split
        for name in ("config.json", "generation_config.json", "tokenizer.json"):
            if not (fp32 / name).exists():
                shutil.copyfile(stage / name, fp32 / name)
        shutil.copyfile(stage / "generation_config.json", fp32 / "generation_config.json")
        t0 = time.time()
        m16 = OnnxMarian(stage, threads=args.threads)
        g16 = m16.translate(srcs, beam=1)
        t_greedy = time.time() - t0
        m32 = OnnxMarian(fp32, threads=args.threads)
        g32 = m32.translate(srcs, beam=1)
        del m32
        t0 = time.time()
        b16 = m16.translate(srcs, beam=4, batch_size=16)
        t_beam = time.time() - t0
        s_g16, s_g32, s_b16 = score(g16, refs, tgt_lang), score(g32, refs, tgt_lang), score(b16, refs, tgt_lang)
        s_copy = score(srcs, refs, tgt_lang)
        print(f"test greedy fp16 {s_g16} fp32 {s_g32}; beam4 fp16 {s_b16}; copy {s_copy}", flush=True)
        if abs(s_g16["chrf"] - s_g32["chrf"]) >= 0.5:
            sys.exit("error: fp16 storage changes test chrF by 0.5 or more")

        # torch (HF generate, greedy) vs ONNX greedy on the first 50 test sentences
        tmodel = MarianMTModel.from_pretrained(str(ckpt))
        from transformers import PreTrainedTokenizerFast
        htok = PreTrainedTokenizerFast.from_pretrained(str(ckpt))
        tg = greedy_torch(tmodel, htok, srcs[:50], max_new=127)
        n_cmp = len(tg)
        same16 = sum(a == b for a, b in zip(tg, g16[:50]))
        same32 = sum(a == b for a, b in zip(tg, g32[:50]))
        print(f"torch greedy == ONNX greedy on {n_cmp} test sentences: fp32 {same32}/{n_cmp}, "
              f"fp16 {same16}/{n_cmp}", flush=True)
        tb = greedy_torch(tmodel, htok, srcs[:20], max_new=127, num_beams=4)
        same_beam = sum(a == b for a, b in zip(tb, b16[:20]))
        print(f"torch beam 4 == ONNX beam 4 (fp16) on {len(tb)} test sentences: {same_beam}/{len(tb)}", flush=True)

        import sacrebleu
        sent = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(b16, refs)]
        order = sorted(range(len(test)), key=lambda i: -sent[i])
        picks = [order[int(round(j * (len(order) - 1) / 9))] for j in range(10)]
        examples = [{"source": srcs[i], "reference": refs[i], "beam4": b16[i], "greedy": g16[i],
                     "chrf": round(sent[i], 1)} for i in picks]
        report.update({
            "test_pairs": len(test),
            "scores": {"greedy": s_g16, "greedy_fp32": s_g32, "beam4": s_b16, "copy": s_copy},
            "torch_vs_onnx_greedy_50": {"fp32": same32, "fp16": same16, "n": n_cmp},
            "torch_vs_onnx_beam4_20": {"same": same_beam, "n": len(tb)},
            "seconds": {"greedy": round(t_greedy, 1), "beam4": round(t_beam, 1)},
            "examples": examples,
            "opset": int(opset),
        })
        import onnxruntime
        import tokenizers
        import transformers
        versions = {
            "torch": torch.__version__, "transformers": transformers.__version__,
            "optimum": md.version("optimum"), "optimum-onnx": md.version("optimum-onnx"),
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "tokenizers": tokenizers.__version__, "sacrebleu": sacrebleu.__version__,
            "opset": int(opset),
        }
        report["versions"] = versions
        (WORK / f"{direction}.report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

        write_docs(stage, direction, report)

        if out_dir.exists():
            known = set(SHIPPED) | {"MODEL_CARD.md", "LICENSE", "tfm-model.json"}
            stray = [p.name for p in out_dir.iterdir() if p.name not in known]
            if stray:
                sys.exit(f"error: {out_dir} holds files this recipe did not make: {stray}")
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage, out_dir)
    total = 0
    for p in sorted(out_dir.iterdir()):
        total += p.stat().st_size
        print(f"  {p.stat().st_size:>11,}  {p}")
    print(f"  {total:>11,}  total")


def write_docs(folder: Path, direction: str, report: dict) -> None:
    """LICENSE, MODEL_CARD.md and tfm-model.json for a model folder, from the export report."""
    sc = report["scores"]
    (folder / "LICENSE").write_text(licence_text(direction), encoding="utf-8")
    for stale in ("MODEL_CARD.md", "tfm-model.json"):
        if (folder / stale).exists():
            (folder / stale).unlink()
    sums = {p.name: sha256(p) for p in sorted(folder.iterdir())}
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / "MODEL_CARD.md").write_text(model_card(direction, report, sums, sizes), encoding="utf-8")
    sums["MODEL_CARD.md"] = sha256(folder / "MODEL_CARD.md")
    manifest = {
        "name": f"marian-{direction}",
        "task": "text2text-generation",
        "summary": SUMMARY[direction],
        "source": {"upstream": "trained by tfm on Debian gettext catalogs (zh_CN)",
                   "package": None, "package_version": None},
        "licence": "Apache-2.0 (weights); data under the licences of the Debian packages",
        "weights": "fp16 storage, fp32 compute",
        "export": report["versions"],
        "files": dict(sorted(sums.items())),
        "scores": {
            "test_pairs": report["test_pairs"],
            "bleu_greedy": sc["greedy"]["bleu"], "chrf_greedy": sc["greedy"]["chrf"],
            "bleu_beam4": sc["beam4"]["bleu"], "chrf_beam4": sc["beam4"]["chrf"],
            "bleu_copy_baseline": sc["copy"]["bleu"], "chrf_copy_baseline": sc["copy"]["chrf"],
        },
    }
    (folder / "tfm-model.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def rewrite_docs(args) -> None:
    """Regenerate LICENSE, MODEL_CARD.md and tfm-model.json from the saved export report."""
    direction = args.direction
    out_dir = (args.out or (REPO_ROOT / "models" / f"marian-{direction}")).resolve()
    report = json.loads((WORK / f"{direction}.report.json").read_text())
    for name in SHIPPED:
        if not (out_dir / name).is_file():
            sys.exit(f"error: {out_dir / name} is missing; run export")
    write_docs(out_dir, direction, report)
    print(f"rewrote the docs in {out_dir}")


# how the shipped models were trained: (command, what it was), in order
RUNS = {
    "en-zh": [
        ("nice -n 19 python models/recipes/marian_gettext.py train --direction en-zh --minutes 36 "
         "--max-tokens 2000 --warmup 200",
         "36 minutes on one low-priority CPU thread shared with other work, batches of at most "
         "2,000 padded tokens"),
        ("TFM_TRAIN_THREADS=2 python models/recipes/marian_gettext.py train --direction en-zh --resume "
         "--minutes-override --minutes 126 --max-tokens 4000",
         "resumed later on two otherwise idle CPU threads with batches of at most 4,000 padded "
         "tokens and the linear decay restarted over a 126-minute budget (7e-4 at the resume); "
         "stopped by hand after the checkpoint at 109 minutes to leave time for zh→en"),
    ],
    "zh-en": [
        ("nice -n 19 python models/recipes/marian_gettext.py train --direction zh-en --minutes 28 "
         "--max-tokens 2000 --warmup 100 --init-from /work/train/en-zh/best",
         "warm-started from the en→zh checkpoint of the first sitting (step 1,159), then 28 minutes on "
         "one low-priority shared CPU thread, batches of at most 2,000 padded tokens"),
        ("TFM_TRAIN_THREADS=2 python models/recipes/marian_gettext.py train --direction zh-en --resume "
         "--minutes-override --minutes 55 --max-tokens 4000",
         "resumed later for 30 more minutes on two otherwise idle CPU threads, batches of at most "
         "4,000 padded tokens; the linear decay restarted over the longer budget"),
    ],
}

SUMMARY = {
    "en-zh": "English→Simplified Chinese for short software messages (UI strings, command-line help); "
             "small model trained on Debian gettext catalogs; check its output; not for general text",
    "zh-en": "Simplified Chinese→English for short software messages (UI strings, command-line help); "
             "small model trained on Debian gettext catalogs; check its output; not for general text",
}


def licence_text(direction: str) -> str:
    head = f"""marian-{direction} (shipped with tfm)
{'=' * (len(direction) + 28)}

Model weights
-------------
The weights in encoder_model.onnx and decoder_model_merged.onnx were trained
from scratch by the tfm project (recipe: models/recipes/gettext_corpus.py and
models/recipes/marian_gettext.py) and are released under the Apache License,
Version 2.0. The tokenizer (tokenizer.json) was trained by the same recipe on the
same data and is released under the same licence.

Training data
-------------
The models were trained on the human translations (English <-> Simplified
Chinese, zh_CN) found in the gettext message catalogs (.mo files) that Debian
packages install under /usr/share/locale. Those translations belong to their
packages and are distributed under the licences of the respective packages
(mostly GPL-2.0+, GPL-3.0+, LGPL-2.1+ and similar free licences; see each
package's /usr/share/doc/PACKAGE/copyright). The corpus itself is not shipped
with tfm. See MODEL_CARD.md for the list of the largest catalogs.

Licensed under the Apache License, Version 2.0 (the "License"); you may not use
these files except in compliance with the License. You may obtain a copy of the
License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed
under the License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR
CONDITIONS OF ANY KIND, either express or implied. See the License for the
specific language governing permissions and limitations under the License.
"""
    full = Path("/usr/share/common-licenses/Apache-2.0")
    if full.is_file():
        head += ("\n\nFull text of the Apache License, Version 2.0\n" + "-" * 72 + "\n\n"
                 + full.read_text(encoding="utf-8").strip() + "\n")
    return head


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("`", "'")


def model_card(direction: str, r: dict, sums: dict, sizes: dict) -> str:
    src_lang, tgt_lang = direction.split("-")
    lang = {"en": "English", "zh": "Simplified Chinese"}
    corpus = json.loads((CORPUS / "stats.json").read_text())
    st = corpus["stats"]
    tr = r["train"]
    metrics = [json.loads(l) for l in open(WORK / f"{direction}.metrics.jsonl")]
    last = metrics[-1]
    sc = r["scores"]
    v = r["versions"]
    top = ", ".join(f"{d} ({n:,})" for d, n in corpus["top_domains_final"][:20])
    ex_rows = "\n".join(
        f"| {_md(e['source'])} | {_md(e['reference'])} | {_md(e['beam4'])} | {e['chrf']} |" for e in r["examples"]
    )
    files = "\n".join(f"| `{n}` | {sizes[n]:,} | `{sums[n]}` |" for n in sorted(sums))
    dio = r["decoder_io"]
    dio_txt = "\n".join(f"  - `{x['name']}` {x['type']} {x['shape']}" for x in dio["inputs"])
    doo_txt = "\n".join(f"  - `{x['name']}` {x['type']} {x['shape']}" for x in dio["outputs"])
    curve = "\n".join(
        f"| {m['step']} | {m['minutes']} | {m['train_loss']} | {m['dev']['chrf']} | {m['dev']['bleu']} |" for m in metrics
    )
    bleu_tok = "`zh` (characters)" if tgt_lang == "zh" else "`13a`"
    good_bad_text = good_bad(direction, r)
    train_zh = {zh for _, zh, _ in read_tsv("train")}
    test_rows = read_tsv("test")
    zh_overlap = sum(zh in train_zh for _, zh, _ in test_rows)
    runs_txt = "\n".join(f"  {i}. {what}." for i, (_, what) in enumerate(RUNS[direction], 1))
    runs_cmd = "\n".join(cmd for cmd, _ in RUNS[direction])
    warm = ""
    if tr.get("init_from"):
        warm = ("\n- Warm start: training began from the weights of an en→zh checkpoint "
                f"(`{tr['init_from']}`; same shared vocabulary and tied embeddings), with a fresh "
                "optimizer and schedule; the minutes and steps above are this direction's only.")
    if direction == "zh-en":
        runs_cmd = RUNS["en-zh"][0][0] + "    # the en->zh checkpoint zh->en starts from\n" + runs_cmd
    return f"""# marian-{direction}: {lang[src_lang]} → {lang[tgt_lang]} for software messages

A small Transformer translation model (Hugging Face `MarianMTModel`) trained
from scratch by tfm on the human translations in the gettext catalogs of Debian
packages, exported with Optimum exactly like a hub `Helsinki-NLP/opus-mt-*`
model (`encoder_model.onnx` + `decoder_model_merged.onnx`, `config.json`,
`generation_config.json`, `tokenizer.json`).

**What it is:** a real, working, but small model: it has seen about
{st['train_pairs']:,} short pairs of software strings and nothing else, has
{tr['parameters']:,} parameters and was trained for {last['minutes']:.0f} minutes on
a CPU. On the held-out test split its chrF (beam 4) is {sc['beam4']['chrf']}, against
{sc['copy']['chrf']} for copying the source. **Not for** general text (news,
conversation, documents), and not a translator to trust unchecked; see the
scores and examples below.

## Data

- Source: every zh_CN `.mo` catalog installed on the build machine
  ({st['catalogs']} catalogs after removing byte-identical copies; read with
  `gettext.GNUTranslations`), i.e. the human translations of Debian packages'
  messages. No extra packages were installed for this corpus.
- **Licences:** the translations belong to their packages and are under the
  licences of the respective Debian packages (mostly GPL/LGPL). The corpus is
  not shipped; the recipe rebuilds it from the catalogs.
- Largest domains (pairs after cleaning): {top}.
- Counts: {st['raw_pairs']:,} raw entries (header excluded; plural entries: singular,
  form 0) → {st['clean_pairs']:,} after cleaning (dropped: identical to source
  {st.get('drop_identical', 0):,}, length outside 2–200 characters
  {st.get('drop_length', 0):,}, no CJK character in the Chinese side
  {st.get('drop_no_cjk', 0):,}, format placeholders not matching as multisets
  {st.get('drop_placeholders', 0):,}, empty target {st.get('drop_empty_target', 0):,}) →
  {st['unique_pairs']:,} unique pairs → {st['unique_sources']:,} after keeping one
  target per English source (the most frequent; {st.get('sources_with_several_targets', 0):,}
  sources had several).
- Cleaning also strips accelerator marks (`_File`, `&File`, the zh_CN suffixes
  `(_F)`/`(&F)`) and normalises whitespace.

## Split

By source message: the English text, lower-cased and whitespace-normalised, is
hashed (sha256 with a fixed seed, `{corpus['seed']}`) and the first messages in
hash order form the test split, the next the dev split, the rest train. All case
variants of one English message fall into the same split, so no test English
message was seen in training in either direction (the zh→en model is trained on
the same train split, reversed). The Chinese side is not deduplicated across
splits: {zh_overlap} of the {len(test_rows):,} test Chinese strings also occur in train as
the translation of a different English message (e.g. two wordings of one
message translated alike), so for zh→en those test inputs are not entirely unseen.

| split | pairs | messages |
|---|---:|---:|
| train | {st['train_pairs']:,} | {st['train_messages']:,} |
| dev | {st['dev_pairs']:,} | {st['dev_messages']:,} |
| test | {st['test_pairs']:,} | {st['test_messages']:,} |

## Model

- `MarianMTModel`: d_model 256, 3 encoder + 3 decoder layers, 4 heads, FFN 1024,
  swish, sinusoidal positions (max {MAX_POS}), scaled embeddings, one shared
  embedding matrix for encoder, decoder and output (tied); {tr['parameters']:,}
  parameters.
- Tokenizer: one Unigram model (`tokenizers` library, NFC, Metaspace) with a
  vocabulary of {VOCAB_SIZE:,}, trained on both sides of the train split and
  shared by both directions; `<pad>` = 0 (also the decoder start token, as in
  Marian), `</s>` = 1 (appended by the post-processor), `<unk>` = 2.
- Training: AdamW (lr 1e-3 peak, β 0.9/0.98, weight decay 0.01), linear warmup,
  then linear decay over a wall-clock budget; label smoothing 0.1; dropout 0.1;
  sequences truncated at {MAX_LEN} tokens. Sittings:
{runs_txt}
  The checkpoint kept is the one with the best greedy chrF on
  200 dev messages: step {tr['step']} (epoch {tr['epoch']}, {tr['minutes']} min);
  training ran {last['step']} steps in {last['minutes']} minutes.{warm}

| step | minutes | train loss | dev chrF | dev BLEU |
|---:|---:|---:|---:|---:|
{curve}

## Scores (test split, {r['test_pairs']:,} pairs)

sacrebleu {v['sacrebleu']}; BLEU with tokenizer {bleu_tok}, chrF with defaults.
Translations come from the shipped ONNX graphs run with onnxruntime (the
recipe's own greedy and beam search over `decoder_model_merged.onnx`,
max_length 128, `<pad>` banned, forced `</s>` at the end).

| system | BLEU | chrF |
|---|---:|---:|
| this model, beam 4 | {sc['beam4']['bleu']} | {sc['beam4']['chrf']} |
| this model, greedy | {sc['greedy']['bleu']} | {sc['greedy']['chrf']} |
| same export with fp32 weights, greedy | {sc['greedy_fp32']['bleu']} | {sc['greedy_fp32']['chrf']} |
| baseline: copy the source | {sc['copy']['bleu']} | {sc['copy']['chrf']} |

The copy baseline is not zero because software messages keep `%s`, option names,
paths and acronyms untranslated. Torch `generate()` (greedy) on the training
checkpoint and the ONNX greedy loop gave the same text for
{r['torch_vs_onnx_greedy_50']['fp32']}/{r['torch_vs_onnx_greedy_50']['n']} (fp32 export) and
{r['torch_vs_onnx_greedy_50']['fp16']}/{r['torch_vs_onnx_greedy_50']['n']} (shipped fp16-storage export) of the
first {r['torch_vs_onnx_greedy_50']['n']} test sentences; with beam 4 (HF's beam search vs the
recipe's, which may break ties and stop slightly differently) {r['torch_vs_onnx_beam4_20']['same']}/{r['torch_vs_onnx_beam4_20']['n']}
of the first {r['torch_vs_onnx_beam4_20']['n']}.

## Examples (test split, beam 4)

Ten test pairs spread evenly from the best to the worst sentence chrF:

| source | reference | model | chrF |
|---|---|---|---:|
{ex_rows}

{good_bad_text}

## Export

`optimum-cli export onnx --model CHECKPOINT --task text2text-generation-with-past`
(torch {v['torch']}, transformers {v['transformers']}, optimum {v['optimum']},
optimum-onnx {v['optimum-onnx']}, onnx {v['onnx']}, opset {v['opset']}). Only
`encoder_model.onnx` and `decoder_model_merged.onnx` are shipped. In both, every
float32 initializer with at least 1,024 elements is stored as float16 followed by
a `Cast(to=FLOAT)` (**fp16 storage, fp32 compute**); in the decoder the output
projection, which Optimum stores as a separate transposed copy of the tied
embedding, is computed by a `Transpose` of the embedding instead. Graph inputs
and outputs are unchanged.

`decoder_model_merged.onnx`:
- inputs:
{dio_txt}
- outputs:
{doo_txt}

First step: `use_cache_branch = [False]` with empty past tensors; later steps:
`use_cache_branch = [True]`, the previous step's `present.N.decoder.*` and the
*first* step's `present.N.encoder.*` (the cached branch returns empty encoder
key/values). The folder also loads as it is with Optimum's
`optimum.onnxruntime.ORTModelForSeq2SeqLM.from_pretrained(folder)` and its
`generate()` (checked at build time), like a hub Marian export.

## Rebuild

```
python models/recipes/gettext_corpus.py                 # -> /work/train/corpus/{{train,dev,test}}.tsv
python models/recipes/marian_gettext.py tokenizer       # -> /work/train/tokenizer/
{runs_cmd}
#   (an interrupted run continues with the same command plus --resume)
python models/recipes/marian_gettext.py export --direction {direction}
python models/recipes/marian_gettext.py references --direction {direction}   # tests/data/marian-{direction}-generate.json
```

Training is not bit-reproducible (wall-clock budget, CPU load), so a rebuild
gives a similar but not identical model.

## Files

| file | bytes | sha256 |
|---|---:|---|
{files}
"""


def good_bad(direction: str, r: dict) -> str:
    sc = r["scores"]
    beam, copy = sc["beam4"], sc["copy"]
    minutes = json.loads(open(WORK / f"{direction}.metrics.jsonl").readlines()[-1])["minutes"]
    verdict = (
        f"It is small (7.7M parameters) and had {minutes:.0f} minutes of CPU training on short "
        f"software strings only. On the test split its chrF (beam 4: {beam['chrf']}) and BLEU "
        f"({beam['bleu']}) are " + ("above" if beam["chrf"] > copy["chrf"] and beam["bleu"] > copy["bleu"]
                                    else "NOT both above")
        + f" those of copying the source ({copy['chrf']} / {copy['bleu']}). " + OBSERVED[direction]
    )
    return f"""## What it is good for, and what not

{verdict}

- Good for: exercising and testing tfm's translation pipeline with a real,
  Optimum-exported Marian model (same graphs, inputs and tokenizer files as a
  `Helsinki-NLP/opus-mt-*` export); translating short, frequent software
  strings like those in the catalogs (menu labels, option help, common error
  messages), keeping placeholders such as `%s`/`%d` most of the time.
- Not good for: general text of any kind (news, conversation, documents), long
  or unusual sentences, rare terms and proper names (country, language and place
  names are often wrong), and any use where a wrong translation matters. Check
  every output; do not ship its translations to users unreviewed.
- More training (`train --direction {direction} --resume --minutes-override
  --minutes N`, then `export`) would improve it; the recipe is resumable.
"""


# what reading the test-split output showed (written after looking at it)
OBSERVED = {
    "en-zh": ("Reading its test output: short strings and common messages usually come out right "
              "or close, with placeholders, option names and code left as they are; longer help texts "
              "lose or repeat parts, rare words are sometimes left in English, and names of countries "
              "and languages are often wrong."),
    "zh-en": ("Reading its test output: short messages usually come out right or close (often with "
              "different capitalisation or wording than the reference), placeholders and code are kept; "
              "longer sentences lose or repeat parts, and rarer technical terms come out wrong or "
              "garbled."),
}


# a few short strings a reader can check by eye, besides the first test pairs
PROBES = {
    "en-zh": ["File", "Save", "cannot open file %s", "Permission denied", "No such file or directory"],
    "zh-en": ["文件", "保存", "无法打开文件 %s", "权限不够", "没有那个文件或目录"],
}


def references(args) -> None:
    """Hugging Face generate() on the shipped ONNX files -> tests/data/marian-DIRECTION-generate.json.

    Optimum's ORTModelForSeq2SeqLM runs the same encoder_model.onnx and
    decoder_model_merged.onnx under transformers' generate(), so these ids are
    what a Hugging Face user gets from the embedded folder; tfm's own loop must
    reproduce them token for token (tests/test_translate_models.py).
    """
    import onnxruntime as ort
    import transformers
    from optimum.onnxruntime import ORTModelForSeq2SeqLM
    from transformers import PreTrainedTokenizerFast

    direction = args.direction
    folder = (args.model or (REPO_ROOT / "models" / f"marian-{direction}")).resolve()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    model = ORTModelForSeq2SeqLM.from_pretrained(str(folder), session_options=so)
    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    sources = PROBES[direction] + [s for s, _ in pairs_for(direction, "test")[: args.n]]
    examples = []
    for src in sources:
        enc = tok([src], return_tensors="pt")
        outs = {}
        for case, beams in (("greedy", 1), ("beam4", 4)):
            r = model.generate(**enc, num_beams=beams, return_dict_in_generate=True, output_scores=True)
            ids = r.sequences[0].tolist()
            outs[case] = {"output_ids": ids,  # with the decoder start token, as generate() returns them
                          "translation": tok.decode(ids, skip_special_tokens=True)}
            if beams > 1:
                outs[case]["sequences_score"] = float(r.sequences_scores[0])
        examples.append({"source": src, "outputs": outs})
        print(f"{src!r} -> {outs['beam4']['translation']!r}", flush=True)
    manifest = json.loads((folder / "tfm-model.json").read_text())
    doc = {
        "what": f"ORTModelForSeq2SeqLM.generate() (batch 1) on models/marian-{direction} as shipped",
        "model_sha256": {k: v for k, v in manifest["files"].items() if k.endswith(".onnx")},
        "versions": {"transformers": transformers.__version__, "optimum-onnx": md.version("optimum-onnx"),
                     "onnxruntime": ort.__version__},
        "examples": examples,
    }
    out = REPO_ROOT / "tests" / "data" / f"marian-{direction}-generate.json"
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")



# =========================================================================== main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tokenizer", help="train the shared tokenizer")
    t = sub.add_parser("train", help="train one direction")
    t.add_argument("--direction", choices=["en-zh", "zh-en"], required=True)
    t.add_argument("--minutes", type=float, default=35.0, help="wall-clock training budget")
    t.add_argument("--minutes-override", action="store_true", help="with --resume: use --minutes as the new budget")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=300)
    t.add_argument("--max-tokens", type=int, default=6000)
    t.add_argument("--ckpt-minutes", type=float, default=6.0)
    t.add_argument("--dev-n", type=int, default=200, help="dev messages scored at each checkpoint")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--init-from", type=Path, default=None, help="start from this checkpoint's weights")
    e = sub.add_parser("export", help="export, fp16-store, score and write the model folder")
    e.add_argument("--direction", choices=["en-zh", "zh-en"], required=True)
    e.add_argument("--checkpoint", type=Path, default=None, help="default /work/train/DIRECTION/best")
    e.add_argument("--out", type=Path, default=None, help="default models/marian-DIRECTION")
    e.add_argument("--threads", type=int, default=1, help="onnxruntime threads for scoring")
    e.add_argument("--limit", type=int, default=0, help="score only the first N test pairs (smoke test)")
    c = sub.add_parser("docs", help="rewrite LICENSE, MODEL_CARD.md, tfm-model.json from the export report")
    c.add_argument("--direction", choices=["en-zh", "zh-en"], required=True)
    c.add_argument("--out", type=Path, default=None)
    g = sub.add_parser("references", help="generate() outputs of the shipped folder for the tests")
    g.add_argument("--direction", choices=["en-zh", "zh-en"], required=True)
    g.add_argument("--model", type=Path, default=None, help="default models/marian-DIRECTION")
    g.add_argument("--n", type=int, default=20, help="first N test pairs, besides the probes")
    args = ap.parse_args(argv)
    if args.cmd == "tokenizer":
        build_tokenizer()
    elif args.cmd == "train":
        train(args)
    elif args.cmd == "export":
        export(args)
    elif args.cmd == "docs":
        rewrite_docs(args)
    elif args.cmd == "references":
        references(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
