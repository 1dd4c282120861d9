"""Generated tokens per second of tfm translate, greedy and beam 4, next to Hugging Face PyTorch generate().

    python tests/benchmarks/bench_translate.py [--model marian-en-zh] [--sentences 320] [--threads 2]

Variants, all on the same sentences, the same weights, the same batches of
--batch-size (16, tfm translate's default), the same thread count, in the same
process:

* tfm greedy / tfm beam4 -- the real path of `tfm translate`: text lines from
               an in-memory stream through tfm.core.stream.read_records ->
               tfm.core.pipeline.run_stage with TranslateStage (Settings from
               the model's generation_config.json, beams 1 or 4) ->
               RecordWriter (JSON Lines) into a sink that discards the bytes;
* torch greedy / torch beam4 -- Hugging Face: the model folder's tokenizer
               (PreTrainedTokenizerFast, padded batch), MarianMTModel.generate()
               with the same generation_config.json, num_beams 1 or 4,
               do_sample=False, the same max_length, then batch_decode.
               torch.set_num_threads(--threads).

Sentences: the model folder's test.src if it has one (one per line); else the
held-out test split /work/train/corpus/test.tsv (TSV without a header: English,
Chinese, catalog; column 1 for an en->zh model, column 2 for zh-en); else, for
an embedded model, the sources of tests/data/marian-DIRECTION-generate.json (25
held-out and probe sentences), repeated; else the sources in
tests/fixtures/tiny-marian-trained/reference.json, repeated.
Sentences longer than the model's max_position_embeddings (in tokens) are
left out, since neither side can encode them without cutting.

PyTorch weights: --torch-dir (a Hugging Face checkpoint folder) or, by default,
rebuilt from encoder_model.onnx + the decoder graph (bench_classify's
load_onnx_weights; fp16-stored weights are cast back to float32, exactly the
values the ONNX graph computes with).  Before timing the script checks the
rebuilt model: encoder outputs against onnxruntime, and greedy outputs against
tfm's on 20 sentences.  After timing it counts how many of tfm's outputs equal
torch's on all the benchmark sentences.

A generated token is an output id after the decoder start token (the final
</s> included).  Runs interleave chunk by chunk (--chunk sentences), in an
order that rotates, for --rounds rounds.  Target from the issue: tfm at least
2x the PyTorch reference on CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_classify import NullSink, load_onnx_weights  # noqa: E402
from bench_encode import interleave  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "marian-en-zh"
CORPUS_TEST = Path("/work/train/corpus/test.tsv")
REFERENCE = REPO / "tests" / "fixtures" / "tiny-marian-trained" / "reference.json"


# --------------------------------------------------------------------------- sentences


def load_sentences(model, n: int) -> tuple[list[str], str]:
    """Up to n candidate sentences (more are taken so that filtering leaves enough) and where they come from."""
    src = model.path / "test.src"
    if src.is_file():
        lines = [line.strip() for line in src.read_text(encoding="utf-8").splitlines()]
        return [x for x in lines if x], f"{src}"
    if CORPUS_TEST.is_file():
        col = 1 if "zh-en" in f"{model.name} {model.path.name}" else 0
        seen, out = set(), []
        for line in CORPUS_TEST.read_text(encoding="utf-8").splitlines():
            cells = line.split("\t")
            if len(cells) <= col:
                continue
            text = cells[col].strip()
            if text and text not in seen:
                seen.add(text)
                out.append(text)
        return out, f"{CORPUS_TEST} column {col + 1} ({'Chinese' if col else 'English'}, unique sources)"
    # an embedded model on a machine without the corpus: the held-out sentences its test references use
    reference = REPO / "tests" / "data" / f"{model.path.name}-generate.json"
    if not reference.is_file():
        reference = REFERENCE
    ref = json.loads(reference.read_text(encoding="utf-8"))
    base = [ex["source"] for ex in ref["examples"]]
    return [base[i % len(base)] for i in range(n)], f"{reference} sources, repeated"


def source_ids(model, lines: list[str]) -> list[np.ndarray]:
    return [enc["input_ids"] for enc in model.tokenizer.encode(lines, special_tokens=True)]


# --------------------------------------------------------------------------- variants


def trim(row, eos: set[int]) -> list[int]:
    """Output ids after the decoder start token, up to and including the first eos."""
    out = []
    for t in row[1:]:
        out.append(int(t))
        if int(t) in eos:
            break
    return out


class TfmTranslate:
    """tfm's translate path, the stage built once."""

    def __init__(self, model, threads: int, beams: int, batch_size: int):
        from tfm.core.engine import Engine
        from tfm.core.translate import Settings, TranslateStage

        self.settings = Settings.from_model(model, beams=beams)
        self.stage = TranslateStage(model, Engine("cpu", threads), self.settings)
        self.batch_size = batch_size
        self.batches: list[int] = []
        self.outputs: list[list[int]] = []
        run = self.stage.run

        def counted_run(items):  # an instance attribute: tfm's class is untouched
            out = run(items)
            self.batches.append(len(items))
            self.outputs += [f["output_ids"] for f in out]
            return out

        self.stage.run = counted_run

    def __call__(self, data: bytes, writer=None) -> int:
        """Translates the lines in data; returns the number of generated tokens."""
        from tfm.core.pipeline import run_stage
        from tfm.core.stream import RecordWriter, read_records

        self.batches, self.outputs = [], []
        records = read_records([(io.BytesIO(data), "-")], accept_text=True)
        writer = writer if writer is not None else RecordWriter(NullSink(), "json")
        status = run_stage(records, self.stage, writer, batch_size=self.batch_size)
        if status != 0:
            raise SystemExit(f"tfm run_stage exited {status}")
        self.outputs = [[int(t) for t in ids[1:]] for ids in self.outputs]
        return sum(len(ids) for ids in self.outputs)


class TorchTranslate:
    """Hugging Face: tokenizer, MarianMTModel.generate(), batch_decode."""

    def __init__(self, model, threads: int, batch_size: int, torch_dir: Path | None):
        import torch
        from transformers import GenerationConfig, MarianConfig, MarianMTModel, PreTrainedTokenizerFast
        from transformers.utils import logging

        logging.set_verbosity_error()
        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = PreTrainedTokenizerFast.from_pretrained(str(model.path))
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.convert_ids_to_tokens(int(model.config["pad_token_id"]))
        if torch_dir is not None:
            self.model = MarianMTModel.from_pretrained(str(torch_dir))
            self.source = f"checkpoint {torch_dir}"
        else:
            self.model = MarianMTModel(MarianConfig.from_pretrained(str(model.path)))
            decoder = next(name for name in ("decoder_model_merged.onnx", "decoder_model.onnx")
                           if model.has_onnx(name))
            rep = load_onnx_weights(self.model, [(model.onnx("encoder_model.onnx"), ["model.encoder.", "model."]),
                                                 (model.onnx(decoder), ["model.decoder.", "model."])])
            self.source = (f"rebuilt from encoder_model.onnx + {decoder}: {rep['tensors']} named tensors, "
                           f"{rep['linear']} MatMul weights matched through their bias Add, {rep['tied_checks']} "
                           f"bias-less MatMul (tied lm_head) checked; largest disagreement between copies of a tied "
                           f"tensor {rep['max_conflict']:.1e}")
        self.model.eval()
        # the generation settings tfm reads, from the tfm model folder
        if (model.path / "generation_config.json").is_file():
            self.model.generation_config = GenerationConfig.from_pretrained(str(model.path))
        self.eos = {int(e) for e in np.atleast_1d(self.model.generation_config.eos_token_id)}
        self.batch_size = batch_size
        self.batches: list[int] = []
        self.outputs: list[list[int]] = []

    def __call__(self, lines: list[str], beams: int, max_length: int) -> int:
        self.batches, self.outputs = [], []
        for start in range(0, len(lines), self.batch_size):
            batch = lines[start:start + self.batch_size]
            enc = self.tok(batch, return_tensors="pt", padding=True, truncation=False, return_token_type_ids=False)
            with self.torch.inference_mode():
                seqs = self.model.generate(**enc, num_beams=beams, do_sample=False, max_length=max_length)
            self.tok.batch_decode(seqs, skip_special_tokens=True)
            self.outputs += [trim(row, self.eos) for row in seqs.tolist()]
            self.batches.append(len(batch))
        return sum(len(ids) for ids in self.outputs)


# --------------------------------------------------------------------------- checks


def check_rebuilt(model, tfm_greedy: TfmTranslate, torch_v: TorchTranslate, lines: list[str], ids) -> None:
    """Encoder outputs and greedy translations of the torch model against the ONNX graphs."""
    torch = torch_v.torch
    width = max(len(x) for x in ids)
    pad = tfm_greedy.settings.pad
    inp = np.full((len(ids), width), pad, dtype=np.int64)
    mask = np.zeros_like(inp)
    for b, x in enumerate(ids):
        inp[b, :len(x)], mask[b, :len(x)] = x, 1
    enc = tfm_greedy.stage.encoder
    feed = {k: v for k, v in {"input_ids": inp, "attention_mask": mask}.items()
            if k in {i.name for i in enc.get_inputs()}}
    o_hidden = enc.run(["last_hidden_state"], feed)[0]
    with torch.inference_mode():
        t_hidden = torch_v.model.get_encoder()(input_ids=torch.from_numpy(inp),
                                               attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    hdiff = float(np.abs((o_hidden - t_hidden) * mask[:, :, None]).max())
    tok_same = sum(list(a) == b for a, b in zip(ids, torch_v.tok(lines)["input_ids"]))
    tfm_greedy(("\n".join(lines) + "\n").encode("utf-8"))
    torch_v(lines, 1, tfm_greedy.settings.max_length)
    same = sum(a == b for a, b in zip(tfm_greedy.outputs, torch_v.outputs))
    print(f"check on {len(lines)} sentences: HF tokenizer ids == tfm's for {tok_same}/{len(lines)}; encoder "
          f"last_hidden_state max |torch - onnxruntime| {hdiff:.2e}; greedy outputs identical {same}/{len(lines)}"
          + ("" if same == len(lines) else "  <-- NOT ALL IDENTICAL"))


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a Marian export: folder or embedded name (marian-en-zh)")
    ap.add_argument("--sentences", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=64, help="sentences per timed run; variants alternate chunk by chunk")
    ap.add_argument("--beams", type=int, default=4, help="beams of the beam-search variants (default 4)")
    ap.add_argument("--torch-dir", type=Path, default=None,
                    help="Hugging Face checkpoint folder for the PyTorch variant (default: rebuilt from the ONNX graphs)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch variants")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="only cProfile the tfm path (greedy and beam) on N sentences")
    args = ap.parse_args()

    from tfm.core.modeldir import resolve

    model = resolve(args.model, task="text2text-generation")
    candidates, origin = load_sentences(model, args.sentences)
    limit = model.config.get("max_position_embeddings")
    ids_all = source_ids(model, candidates)
    keep = [i for i, x in enumerate(ids_all) if not limit or len(x) <= limit]
    dropped = len(candidates) - len(keep)
    keep = keep[: args.sentences]
    lines = [candidates[i] for i in keep]
    ids = [ids_all[i] for i in keep]

    greedy_v = TfmTranslate(model, args.threads, 1, args.batch_size)
    beam_v = TfmTranslate(model, args.threads, args.beams, args.batch_size)
    max_length = greedy_v.settings.max_length
    if args.profile:
        data = ("\n".join(lines[: args.profile]) + "\n").encode("utf-8")
        greedy_v(("\n".join(lines[:16]) + "\n").encode("utf-8"))  # warm-up
        for name, v in (("greedy", greedy_v), (f"beam {args.beams}", beam_v)):
            prof = cProfile.Profile()
            prof.enable()
            v(data)
            prof.disable()
            print(f"\ncProfile of tfm translate, {name}, {args.profile} sentences (main thread only):")
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return

    print(f"model {model.name} ({model.path}), {len(lines)} sentences from {origin}"
          f"{f', {dropped} longer than {limit} tokens left out' if dropped else ''}; source tokens "
          f"mean {statistics.mean(len(x) for x in ids):.1f} (max {max(len(x) for x in ids)}); max_length {max_length}, "
          f"beams 1 and {args.beams}, batch size {args.batch_size}, {args.threads} threads, {args.rounds} rounds of "
          f"{-(-len(lines) // args.chunk)} alternating chunks, {os.cpu_count()} CPUs, "
          f"TFM_THREADS={os.environ.get('TFM_THREADS', 'unset')}")

    torch_v = None
    if args.no_torch:
        print("torch: skipped (--no-torch)")
    else:
        try:
            import torch
            import transformers
        except ImportError as e:
            print(f"torch: skipped ({e})")
        else:
            torch_v = TorchTranslate(model, args.threads, args.batch_size, args.torch_dir)
            print(f"torch {torch.__version__}, transformers {transformers.__version__}, weights {torch_v.source}")
            check_rebuilt(model, greedy_v, torch_v, lines[:20], ids[:20])

    pieces = [lines[i:i + args.chunk] for i in range(0, len(lines), args.chunk)]
    data = [("\n".join(p) + "\n").encode("utf-8") for p in pieces]
    variants = {"tfm greedy": lambda c: greedy_v(data[c]), f"tfm beam{args.beams}": lambda c: beam_v(data[c])}
    owners = {"tfm greedy": greedy_v, f"tfm beam{args.beams}": beam_v}
    if torch_v is not None:
        variants["torch greedy"] = lambda c: torch_v(pieces[c], 1, max_length)
        variants[f"torch beam{args.beams}"] = lambda c: torch_v(pieces[c], args.beams, max_length)
        owners["torch greedy"] = owners[f"torch beam{args.beams}"] = torch_v
    names = list(variants)
    # warm-up: one chunk each
    for k in names:
        variants[k](0)

    tokens = {k: [0] * len(pieces) for k in names}
    outputs = {k: [None] * len(pieces) for k in names}
    batches = {k: [] for k in names}

    def after(r, c, k, n_tokens):
        tokens[k][c] = n_tokens
        if r == 0:
            outputs[k][c] = list(owners[k].outputs)
            batches[k] += owners[k].batches

    times, turns = interleave(variants, len(pieces), args.rounds, after)
    paired: dict[str, list[float]] = {"greedy": [], "beam": []}
    if torch_v is not None:
        paired["greedy"] = [t["torch greedy"] / t["tfm greedy"] for t in turns]
        paired["beam"] = [t[f"torch beam{args.beams}"] / t[f"tfm beam{args.beams}"] for t in turns]

    n = len(lines)
    print()
    print(f"{'variant':<16}{'tokens':>8}{'best tok/s':>12}{'median tok/s':>14}{'best sent/s':>13}{'mean len':>10}"
          "  batches")
    best, median = {}, {}
    for k in names:
        tok = sum(tokens[k])
        t_best = sum(min(t) for t in times[k])
        t_med = sum(statistics.median(t) for t in times[k])
        best[k], median[k] = tok / t_best, tok / t_med
        sizes = batches[k]
        print(f"{k:<16}{tok:>8}{best[k]:>12.1f}{median[k]:>14.1f}{n / t_best:>13.1f}{tok / n:>10.1f}  "
              f"{len(sizes)} batches, mean {statistics.mean(sizes):.1f} (min {min(sizes)})")
    print(f"best = tokens / sum over the {len(pieces)} chunks of each chunk's fastest of {args.rounds} runs; "
          "median likewise; paired = median over (round, chunk) of torch time / tfm time of runs in the same chunk turn")

    if torch_v is None:
        print("\ntranslate: torch (HF) skipped")
        return
    print()
    for mode, k_tfm, k_torch in (("greedy", "tfm greedy", "torch greedy"),
                                 (f"beam {args.beams}", f"tfm beam{args.beams}", f"torch beam{args.beams}")):
        mine = [ids for part in outputs[k_tfm] for ids in part]
        theirs = [ids for part in outputs[k_torch] for ids in part]
        same = sum(a == b for a, b in zip(mine, theirs))
        ratio = best[k_tfm] / best[k_torch]
        p = statistics.median(paired["greedy" if mode == "greedy" else "beam"])
        print(f"translate {mode}: tfm {best[k_tfm]:.1f} tok/s, torch (HF) {best[k_torch]:.1f} tok/s, "
              f"ratio tfm/torch {ratio:.2f} (paired, time {p:.2f}; target >= 2.00: "
              f"{'meets' if ratio >= 2 else 'MISSES'}); outputs identical to torch's: {same}/{len(mine)}")


if __name__ == "__main__":
    main()
