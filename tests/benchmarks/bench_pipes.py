"""What does taking the model apart in a shell pipe cost over running it whole?

    python tests/benchmarks/bench_pipes.py [--sentences 2000] [--rounds 2]

On the same sentences (a file), via `bash -c` with `set -o pipefail`:

    pipe    tfm tokenize -f npy | tfm embed -f npy | tfm posenc -f npy | tfm encode -f npy > /dev/null
    direct  tfm tokenize -f npy | tfm encode -f npy > /dev/null

and the same two in JSON mode (no -f npy).  Runs alternate (pipe, direct,
then direct, pipe, ...) for --rounds rounds of each mode; the table gives the
best and median wall time, the CPU seconds of all the processes of a run, and
the ratio pipe/direct (from the best runs, and as the median over rounds of
back-to-back runs).  The issue's target: the binary pipe costs less than
1.5x the direct path.

Before timing, each binary pipeline runs once into a file (this is also the
warm-up) and the two outputs are compared record by record with nothing but
numpy.lib.format.read_array: last_hidden_state must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentences import as_text, sentences  # noqa: E402


def pipelines(fmt_flag: str, threads: str) -> dict[str, str]:
    f = f" {fmt_flag}" if fmt_flag else ""
    return {
        "pipe": f"tfm tokenize{f} | tfm embed{f}{threads} | tfm posenc{f}{threads} | tfm encode{f}{threads}",
        "direct": f"tfm tokenize{f} | tfm encode{f}{threads}",
    }


def run(pipeline: str, src: Path, dst: str, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every process) of one run of a pipeline."""
    script = f"set -o pipefail; {pipeline} < '{src}' > '{dst}'"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(["bash", "-c", script], stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"`{pipeline}` exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


class ReadOnly:
    """What a plain Python user hands to read_array for a pipe: an object with only .read."""

    def __init__(self, f):
        self.read = f.read


def npy_stream(path: Path):
    """(header, tensors) of each record of a tfm NumPy stream, read with numpy alone."""
    from numpy.lib.format import read_array

    with open(path, "rb") as f:
        src = ReadOnly(f)
        while True:
            try:
                head = read_array(src)
            except ValueError:  # end of stream: no magic string left
                return
            header = json.loads(head.tobytes())
            tensors = {name: read_array(src) for name in header["tensors"]}
            yield header, tensors


def compare(pipe_out: Path, direct_out: Path) -> None:
    count, worst, worst_at, extra = 0, -1.0, 0, set()
    direct = npy_stream(direct_out)
    for (h1, t1), (h2, t2) in zip(npy_stream(pipe_out), direct, strict=False):
        count += 1
        if h1["meta"].get("ok") is False or h2["meta"].get("ok") is False:
            raise SystemExit(f"record {count} failed: {h1['meta'].get('error') or h2['meta'].get('error')}")
        if h1["meta"].get("text") != h2["meta"].get("text"):
            raise SystemExit(f"record {count}: the two outputs hold different sentences")
        a, b = t1["last_hidden_state"], t2["last_hidden_state"]
        if a.shape != b.shape:
            raise SystemExit(f"record {count}: last_hidden_state {a.shape} (pipe) != {b.shape} (direct)")
        diff = float(np.abs(a.astype(np.float64) - b).max())
        if diff > worst:
            worst, worst_at = diff, count
        extra |= set(h1["fields"]) ^ set(h2["fields"])
    left = sum(1 for _ in direct)
    if left:
        raise SystemExit(f"direct output has {left} more records than the pipe's {count}")
    print(f"outputs agree on {count} records: max |pipe - direct| last_hidden_state = {worst:.3g}"
          + (f" (record {worst_at})" if worst > 0 else " (bit-identical)") + (f"; fields in only one of them: {sorted(extra)}" if extra else
                                     "; same fields"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2, help="timed runs of each pipeline per mode (default 2)")
    ap.add_argument("--modes", default="npy,json", help="comma-separated: npy, json (default both)")
    ap.add_argument("--threads", type=int, default=None,
                    help="pass --threads N to the model commands (default: theirs, all cores)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    threads = f" --threads {args.threads}" if args.threads else ""
    env = {k: v for k, v in os.environ.items() if k not in ("TFM_THREADS", "TFM_DEBUG")}

    with tempfile.TemporaryDirectory(prefix="tfm-bench-") as tmp:
        src = Path(tmp) / "sentences.txt"
        src.write_bytes(as_text(sentences(args.sentences, seed=args.seed)))
        print(f"{args.sentences} sentences ({src.stat().st_size:,} bytes), {args.rounds} alternating rounds per mode, "
              f"{os.cpu_count()} CPUs, TFM_THREADS unset, model threads: {args.threads or 'default'}")

        if "npy" in modes:
            outs = {}
            for name, pipeline in pipelines("-f npy", threads).items():
                outs[name] = Path(tmp) / f"{name}.npy"
                wall, _ = run(pipeline, src, str(outs[name]), env)
                print(f"  warm-up {name} npy into a file: {wall:.1f}s, {outs[name].stat().st_size / 1e6:.0f} MB")
            compare(outs["pipe"], outs["direct"])
            for path in outs.values():
                path.unlink()

        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for r in range(args.rounds):
            for mode in modes:
                lines = pipelines("-f npy" if mode == "npy" else "", threads)
                order = ["pipe", "direct"] if r % 2 == 0 else ["direct", "pipe"]
                for name in order:
                    wall, cpu = run(lines[name], src, os.devnull, env)
                    results.setdefault(mode, {}).setdefault(name, []).append((wall, cpu))
                    print(f"  round {r + 1} {mode:<4} {name:<6} {wall:6.1f}s wall, {cpu:6.1f}s CPU", flush=True)

    print()
    print(f"{'mode':<6}{'pipeline':<8}{'best wall':>11}{'median wall':>13}{'median CPU':>12}{'sent/s':>9}"
          f"{'pipe/direct (best)':>20}{'(paired)':>10}")
    summary = []
    for mode in modes:
        res = results[mode]
        best = {k: min(w for w, _ in v) for k, v in res.items()}
        paired = statistics.median(p[0] / d[0] for p, d in zip(res["pipe"], res["direct"]))
        for name in ("pipe", "direct"):
            walls = [w for w, _ in res[name]]
            cpus = [c for _, c in res[name]]
            ratio = f"{best['pipe'] / best['direct']:>20.2f}{paired:>10.2f}" if name == "pipe" else ""
            print(f"{mode:<6}{name:<8}{best[name]:>10.1f}s{statistics.median(walls):>12.1f}s"
                  f"{statistics.median(cpus):>11.1f}s{args.sentences / best[name]:>9.1f}{ratio}")
        summary.append((mode, best, paired))
    print("pipe = tokenize | embed | posenc | encode; direct = tokenize | encode; "
          "paired = median over rounds of pipe/direct of back-to-back runs")
    print()
    for mode, best, paired in summary:
        verdict = ""
        if mode == "npy":
            verdict = f"; target < 1.5: {'meets' if best['pipe'] / best['direct'] < 1.5 else 'MISSES'}"
        print(f"pipes ({mode}): pipe {best['pipe']:.1f}s, direct {best['direct']:.1f}s, "
              f"ratio {best['pipe'] / best['direct']:.2f} (paired {paired:.2f}){verdict}")


if __name__ == "__main__":
    main()
