"""How much does tfm's record machinery cost over a plain onnxruntime loop?

    python tests/benchmarks/bench_encode.py [--sentences 1000] [--batch-size 32] [--threads 2]

Variants, all on the same sentences, the same model file, the same thread
count, in the same process:

* tfm npy   -- the real path of `tfm encode -f npy`: text lines from an
               in-memory stream through tfm.core.stream.read_records ->
               tfm.core.pipeline.run_stage with EncodeStage -> RecordWriter
               (npy) into a sink that discards what it is given;
* tfm json  -- the same with JSON Lines output;
* plain     -- the loop one would write by hand: tokenizers.Tokenizer
               (no padding, no truncation), batches of --batch-size padded to
               the batch's longest sentence, InferenceSession.run, padding cut
               off each result.  No output is serialized.

The machine this was written on has 2 noisy cores, so runs interleave finely:
the sentences are cut into --chunk pieces and every variant runs every piece,
back to back, in an order that rotates from piece to piece, for --rounds
rounds.  The table shows best-of-N and median throughput (per piece, summed)
and the ratio tfm/plain both from the best runs and as the median of the
ratios of back-to-back runs.  The mean batch size tfm really used is measured
by wrapping the stage's run method on the instance (tfm's code is untouched).  The
issue's target: tfm npy >= 0.9 x plain.  A subprocess run of the real CLI
(`tfm encode -f npy` on a file) is added for context; it includes start-up.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentences import as_text, sentences  # noqa: E402


class NullSink:
    """A binary stream that discards everything (counts the bytes)."""

    def __init__(self) -> None:
        self.nbytes = 0

    def write(self, data) -> int:
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        self.nbytes += n
        return n

    def flush(self) -> None:
        pass


class ReadOnly:
    """What a plain Python user hands to numpy's read_array for a pipe: only .read."""

    def __init__(self, data: bytes):
        self.read = io.BytesIO(data).read


# --------------------------------------------------------------------------- tfm


class TfmEncode:
    """tfm's own encode path, with the stage built once (like the session of the plain loop)."""

    def __init__(self, threads: int, batch_size: int):
        from tfm.core.encode import EncodeStage
        from tfm.core.engine import Engine
        from tfm.core.modeldir import resolve

        self.model = resolve(None)
        self.stage = EncodeStage(self.model, Engine("cpu", threads))
        self.batch_size = batch_size
        self.batches: list[tuple[int, int]] = []  # (records, padded width) of each stage.run call
        run = self.stage.run

        def counted_run(items):  # an instance attribute: tfm's class is untouched
            self.batches.append((len(items), max(len(it.ids) for it in items)))
            return run(items)

        self.stage.run = counted_run

    def __call__(self, data: bytes, fmt: str, sink=None) -> int:
        from tfm.core.pipeline import run_stage
        from tfm.core.stream import RecordWriter, read_records

        self.batches = []
        sink = sink if sink is not None else NullSink()
        records = read_records([(io.BytesIO(data), "-")], accept_text=True)
        status = run_stage(records, self.stage, RecordWriter(sink, fmt), batch_size=self.batch_size)
        if status != 0:
            raise SystemExit(f"tfm run_stage exited {status}")
        return sink.nbytes if isinstance(sink, NullSink) else 0


# --------------------------------------------------------------------------- plain


class PlainEncode:
    """The hand-written loop: tokenizer, padded batches, session.run, padding cut off."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, threads: int, batch_size: int, pad_id: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_path))
        self.tok.no_padding()
        self.tok.no_truncation()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
        self.feed_names = {i.name for i in self.session.get_inputs()}
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.batches: list[tuple[int, int]] = []

    def __call__(self, data: bytes, keep: list | None = None) -> None:
        self.batches = []
        lines = data.decode("utf-8").splitlines()
        for start in range(0, len(lines), self.batch_size):
            encodings = self.tok.encode_batch(lines[start:start + self.batch_size])
            width = max(len(e.ids) for e in encodings)
            ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(encodings), width), dtype=np.int64)
            types = np.zeros((len(encodings), width), dtype=np.int64)
            for b, e in enumerate(encodings):
                n = len(e.ids)
                ids[b, :n], mask[b, :n], types[b, :n] = e.ids, e.attention_mask, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feed = {k: v for k, v in feed.items() if k in self.feed_names}
            hidden = self.session.run(["last_hidden_state"], feed)[0]  # (B, T, D)
            self.batches.append((len(encodings), width))
            for b, e in enumerate(encodings):
                h = hidden[b, : len(e.ids)]  # (T, D)
                if keep is not None:
                    keep.append(np.array(h))


# --------------------------------------------------------------------------- helpers


def interleave(variants: dict, n_chunks: int, rounds: int, after=None):
    """Time every variant on every chunk, `rounds` times (shared by the benchmarks).

    Within a chunk the variants run back to back, in an order that rotates from
    turn to turn, so a burst of load from elsewhere hits all of them alike.
    variants: name -> fn(chunk index); after(round, chunk, name, fn's result)
    runs after each timed call, outside the timing. Returns times[name][chunk]
    (seconds, one per round) and turns: {name: seconds} per (round, chunk), the
    back-to-back runs that paired ratios compare.
    """
    names = list(variants)
    times = {k: [[] for _ in range(n_chunks)] for k in names}
    turns: list[dict[str, float]] = []
    for r in range(rounds):
        total = dict.fromkeys(names, 0.0)
        for c in range(n_chunks):
            shift = len(turns) % len(names)
            got = {}
            for k in names[shift:] + names[:shift]:
                start = time.perf_counter()
                result = variants[k](c)
                got[k] = time.perf_counter() - start
                times[k][c].append(got[k])
                total[k] += got[k]
                if after is not None:
                    after(r, c, k, result)
            turns.append(got)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {total[k]:.2f}s" for k in names), flush=True)
    return times, turns


def batch_summary(batches: list[tuple[int, int]]) -> str:
    if not batches:
        return "-"
    sizes = [b for b, _ in batches]
    padded = sum(b * w for b, w in batches)
    return f"{len(batches)} batches, mean size {statistics.mean(sizes):.1f} (min {min(sizes)}), {padded:,} padded tokens"


def check_agreement(tfm: TfmEncode, plain: PlainEncode, data: bytes) -> float:
    """Max abs difference of last_hidden_state, tfm npy stream vs the plain loop."""
    from numpy.lib.format import read_array

    buf = io.BytesIO()
    tfm(data, "npy", sink=buf)
    theirs: list[np.ndarray] = []
    plain(data, keep=theirs)
    f = ReadOnly(buf.getvalue())
    worst, count = 0.0, 0
    while True:
        try:
            head = read_array(f)
        except ValueError:  # clean end of stream
            break
        header = json.loads(head.tobytes())
        fields = {name: read_array(f) for name in header["tensors"]}
        mine = fields["last_hidden_state"]
        if mine.shape != theirs[count].shape:
            raise SystemExit(f"record {count + 1}: tfm shape {mine.shape} != plain {theirs[count].shape}")
        worst = max(worst, float(np.abs(mine - theirs[count]).max()))
        count += 1
    if count != len(theirs):
        raise SystemExit(f"tfm wrote {count} records, plain made {len(theirs)}")
    return worst


def cli_context(data: bytes, batch_size: int, threads: int, rounds: int) -> tuple[float, float] | None:
    """(best wall seconds of `tfm encode -f npy < file > /dev/null`, of the same on empty input)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TFM_THREADS", "TFM_DEBUG")}
    cmd = ["tfm", "encode", "-f", "npy", "--batch-size", str(batch_size), "--threads", str(threads)]
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        full, empty = [], []
        for _ in range(rounds):
            for path, times in ((f.name, full), (os.devnull, empty)):
                with open(path, "rb") as stdin, open(os.devnull, "wb") as stdout:
                    start = time.perf_counter()
                    proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env)
                    times.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    print(f"  CLI failed ({proc.returncode}): {proc.stderr.decode().strip()}", file=sys.stderr)
                    return None
    return min(full), min(empty)


def profile(tfm: TfmEncode, data: bytes, fmt: str, top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    tfm(data, fmt)
    prof.disable()
    print(f"\ncProfile of the tfm {fmt} path (main thread only; the read-ahead thread is not seen):")
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--chunk", type=int, default=200,
                    help="sentences per timed run; variants alternate chunk by chunk (0: all at once)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--input", choices=("text", "jsonl"), default="text",
                    help="stream fed to tfm: plain text lines or JSON Lines {\"text\": ...}")
    ap.add_argument("--cli-rounds", type=int, default=2, help="runs of the CLI subprocess (0: skip)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="only cProfile the tfm path (npy and json) on N sentences")
    args = ap.parse_args()

    lines = sentences(args.sentences, seed=args.seed)
    text = as_text(lines)

    tfm = TfmEncode(args.threads, args.batch_size)
    if args.profile:
        small = sentences(args.profile, seed=args.seed)
        tfm(as_text(small[:64]), "npy")  # warm-up
        for fmt in ("npy", "json"):
            profile(tfm, as_text(small), fmt, 25)
        return
    model = tfm.model
    plain = PlainEncode(model.onnx(), model.path / "tokenizer.json", args.threads, args.batch_size,
                        tfm.stage.inputs.pad_id)

    print(f"model {model.name}, {args.sentences} sentences ({len(text):,} bytes of text, input as {args.input}), "
          f"batch size {args.batch_size}, {args.threads} threads, {args.rounds} rounds of "
          f"{-(-args.sentences // (args.chunk or args.sentences))} alternating chunks, "
          f"{os.cpu_count()} CPUs, TFM_THREADS={os.environ.get('TFM_THREADS', 'unset')}")

    # Warm-up (arena allocation, lazy imports), and a check that both compute the same thing.
    warm = as_text(lines[: min(len(lines), 4 * args.batch_size)])
    diff = check_agreement(tfm, plain, warm)
    tfm(warm, "json")
    print(f"agreement on {min(len(lines), 4 * args.batch_size)} sentences: max |tfm - plain| "
          f"last_hidden_state = {diff:.2e}")

    # Interleaving is fine-grained: the sentences are cut into chunks and every
    # variant runs every chunk, in an order that rotates from chunk to chunk, so
    # a burst of load from elsewhere hits all variants alike.
    n = args.sentences
    chunk = args.chunk if args.chunk > 0 else n
    pieces = [lines[i:i + chunk] for i in range(0, n, chunk)]
    plain_in = [as_text(p) for p in pieces]
    tfm_in = [as_text(p) if args.input == "text" else
              "".join(json.dumps({"text": s}) + "\n" for s in p).encode("utf-8") for p in pieces]
    variants = {
        "plain onnxruntime": lambda c: plain(plain_in[c]),
        "tfm npy": lambda c: tfm(tfm_in[c], "npy"),
        "tfm json": lambda c: tfm(tfm_in[c], "json"),
    }
    names = list(variants)
    base = "plain onnxruntime"
    batches: dict[str, list[tuple[int, int]]] = {k: [] for k in names}

    def after(r, c, k, _):
        if r == 0:
            batches[k] += (plain if k == base else tfm).batches

    times, turns = interleave(variants, len(pieces), args.rounds, after)
    paired = {k: [t[base] / t[k] for t in turns] for k in names}

    # output volume, measured once outside the timed runs
    out_bytes = {k: sum(tfm(tfm_in[c], k.split()[1]) for c in range(len(pieces))) for k in names if k != base}

    best = {k: n / sum(min(t) for t in times[k]) for k in names}
    median = {k: n / sum(statistics.median(t) for t in times[k]) for k in names}
    ratio = {k: statistics.median(paired[k]) for k in names}

    print()
    print(f"{'variant':<20}{'best sent/s':>12}{'median sent/s':>15}{'ratio (best)':>14}{'ratio (paired)':>16}"
          f"{'output':>12}  batches")
    for k in names:
        out = f"{out_bytes[k] / 1e6:.1f} MB" if k in out_bytes else "-"
        print(f"{k:<20}{best[k]:>12.1f}{median[k]:>15.1f}{best[k] / best[base]:>14.3f}{ratio[k]:>16.3f}"
              f"{out:>12}  {batch_summary(batches[k])}")
    print(f"best = sum over the {len(pieces)} chunks of each chunk's fastest of {args.rounds} runs; median likewise; "
          "ratio (best) = best tfm / best plain; ratio (paired) = median over all (round, chunk) of "
          "plain time / tfm time of back-to-back runs")

    if args.cli_rounds > 0:
        got = cli_context(text, args.batch_size, args.threads, args.cli_rounds)
        if got is not None:
            full, empty = got
            print(f"\nCLI `tfm encode -f npy --batch-size {args.batch_size} --threads {args.threads} < file > /dev/null`: "
                  f"{full:.2f}s best of {args.cli_rounds} = {n / full:.1f} sent/s including start-up; "
                  f"start-up alone (empty input) {empty:.2f}s; without it {n / max(full - empty, 1e-9):.1f} sent/s")

    print()
    target = "meets" if best["tfm npy"] / best[base] >= 0.9 else "MISSES"
    print(f"encode: tfm {best['tfm npy']:.1f} sent/s, plain onnxruntime {best[base]:.1f} sent/s, "
          f"ratio {best['tfm npy'] / best[base]:.2f} (npy out; target >= 0.90: {target})")
    print(f"encode: tfm {best['tfm json']:.1f} sent/s, plain onnxruntime {best[base]:.1f} sent/s, "
          f"ratio {best['tfm json'] / best[base]:.2f} (json out)")


if __name__ == "__main__":
    main()
