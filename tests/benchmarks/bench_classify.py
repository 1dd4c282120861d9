"""Images per second of tfm's classify path, next to a plain onnxruntime loop and Hugging Face PyTorch.

    python tests/benchmarks/bench_classify.py [--model vit-digits] [--images 400] [--batch-size 32] [--threads 2]

A folder of --images real images is built in a temporary directory from
tests/data/digits/*.png (and, for models other than vit-digits, from
tests/data/photos/* too): each source is copied many times, cropped a little,
resized (digits to 28..300 px a side, photos to 200..640 px on the long side)
and saved as PNG or JPEG, in a mix of 8-bit grey and colour modes, so decoding
and resizing are real work.  (The 16-bit grey digit PNGs are stored as 8-bit:
tfm scales 16-bit samples by 1/257 where Pillow's convert("RGB"), used by the
plain loop and by Hugging Face, clips them to white, and the check below wants
all three to see the same pixels.)  The folder has one sub-folder per --chunk images.

Variants, all on the same files, the same model, the same thread count, in
the same process:

* tfm       -- the real path of `tfm classify`: tfm.core.vision.image_paths
               (the folder walk) -> decoded (decoding and preprocessing on
               worker threads) -> tfm.core.pipeline.run_stage with
               ClassifyStage -> RecordWriter (JSON Lines) into a sink that
               discards the bytes;
* plain     -- the loop one would write by hand over the same model.onnx:
               for each batch of --batch-size files, PIL open + convert("RGB")
               + tfm's own Preprocessor one after the other, np.stack,
               InferenceSession.run, top 5 by argsort.  Nothing is written;
* torch     -- Hugging Face transformers: the same decoding, ViTImageProcessor
               on the batch's PIL images, ViTForImageClassification (PyTorch,
               torch.set_num_threads(--threads)) under inference_mode, top 5.

The PyTorch weights come from --torch-dir (a Hugging Face checkpoint folder)
or, by default, are rebuilt from the ONNX graph's initializers (see
load_onnx_weights, also used by bench_translate.py); the script prints the
largest difference between the torch and onnxruntime logits and flags the
torch variant when it is not below 1e-4.

The variants run chunk by chunk, in an order that rotates from chunk to chunk,
for --rounds rounds (the machine is noisy).  The table gives best-of-N and
median throughput and the ratios.  Targets from the issue: tfm at least as
fast as the PyTorch reference (ratio >= 1) and within 15% of the plain loop
(ratio >= 0.85).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "tests" / "data" / "digits"
PHOTOS = REPO / "tests" / "data" / "photos"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encode import NullSink, interleave  # noqa: E402  (shared with the other benchmarks)


class KeepWriter:
    """Stands in for RecordWriter where a check needs the records themselves (untimed runs only)."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, fields: dict) -> None:
        self.records.append(fields)


# --------------------------------------------------------------------------- ONNX -> PyTorch weights


def _graphs(graph):
    """A graph and every subgraph in it (If branches, Loop bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.g is not None and attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def onnx_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(named tensors, linear weights, bias-less MatMul weights) of an exported graph.

    * named: every initializer, and every tensor computed from initializers
      alone by Cast, Identity or Transpose nodes (fp16 storage + Cast, tied
      weights re-made by a Transpose), by name;
    * linear: for each MatMul whose weight input is such a constant and whose
      output is added to a constant named ``X.bias`` (either input order), the
      torch Linear weight ``X.weight`` = the MatMul weight transposed;
    * loose: MatMul weights with no such bias (e.g. a tied lm_head), by tensor name.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graphs = list(_graphs(model.graph))
    const: dict[str, np.ndarray] = {}
    for g in graphs:
        for init in g.initializer:
            const[init.name] = numpy_helper.to_array(init)
    changed = True
    while changed:  # a few passes: nodes in subgraphs may feed each other out of order
        changed = False
        for g in graphs:
            for node in g.node:
                if node.op_type not in ("Cast", "Identity", "Transpose") or not node.input:
                    continue
                src, dst = node.input[0], node.output[0]
                if src not in const or dst in const:
                    continue
                x = const[src]
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                if node.op_type == "Cast":
                    x = x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
                elif node.op_type == "Transpose":
                    x = np.transpose(x, attrs.get("perm"))
                const[dst] = x
                changed = True
    linear: dict[str, np.ndarray] = {}
    loose: dict[str, np.ndarray] = {}
    for g in graphs:
        consumers: dict[str, list] = {}
        for node in g.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        for node in g.node:
            if node.op_type != "MatMul" or node.input[1] not in const or const[node.input[1]].ndim != 2:
                continue
            weight = const[node.input[1]]
            bias = None
            for user in consumers.get(node.output[0], []):
                if user.op_type != "Add":
                    continue
                other = user.input[1] if user.input[0] == node.output[0] else user.input[0]
                if other in const and clean_name(other).endswith(".bias"):
                    bias = clean_name(other)
            if bias is None:
                loose[node.input[1]] = weight
            else:
                linear[bias[: -len(".bias")] + ".weight"] = np.ascontiguousarray(weight.T)
    named = {clean_name(k): v for k, v in const.items() if not k.startswith("onnx::")}
    return named, linear, loose


def clean_name(name: str) -> str:
    """The parameter name under optimum's renaming: 'x.bias_merged_0' -> 'x.bias'."""
    return re.sub(r"_merged_\d+$", "", name)


def load_onnx_weights(model, sources: list[tuple[Path, list[str]]]) -> dict:
    """Fill a freshly built transformers model with the weights of ONNX graphs; raise if any is left out.

    ``sources``: (graph, name prefixes to try) pairs -- an encoder graph exported
    on its own names its tensors ``layers.0...`` where the full model says
    ``model.encoder.layers.0...``.  Returns a report: how many tensors were set,
    how many MatMul weights were matched through their bias, and the largest
    disagreement between two graphs over one (tied or shared) tensor.
    """
    import torch

    state = model.state_dict()
    # tied tensors (shared embeddings, lm_head) appear under several keys: group them by storage
    storage: dict[str, int] = {k: v.data_ptr() for k, v in state.items()}
    got: dict[str, np.ndarray] = {}
    report = {"tensors": 0, "linear": 0, "tied_checks": 0, "max_conflict": 0.0}

    def key_of(name: str, prefixes: list[str]) -> str | None:
        for prefix in [""] + prefixes:
            if prefix + name in state:
                return prefix + name
        return None

    def put(key: str, value: np.ndarray) -> None:
        want = tuple(state[key].shape)
        if value.shape != want:
            if value.size == int(np.prod(want)) and value.squeeze().shape == state[key].squeeze().shape:
                value = value.reshape(want)
            else:
                raise SystemExit(f"weight {key}: ONNX shape {value.shape}, torch {want}")
        value = value.astype(np.float32)
        for other, arr in got.items():
            if storage[other] == storage[key] and arr.shape == value.shape:
                report["max_conflict"] = max(report["max_conflict"], float(np.abs(arr - value).max()))
        got[key] = value

    loose_all: list[np.ndarray] = []
    for path, prefixes in sources:
        named, linear, loose = onnx_weights(path)
        for name, value in named.items():
            key = key_of(name, prefixes)
            if key is not None:
                put(key, value)
                report["tensors"] += 1
        for name, value in linear.items():
            key = key_of(name, prefixes)
            if key is None:
                raise SystemExit(f"{path.name}: MatMul weight of {name} has no torch parameter")
            put(key, value)
            report["linear"] += 1
        loose_all += list(loose.values())
    missing = []
    for key, tensor in state.items():
        if key in got or any(storage[o] == storage[key] for o in got):
            continue
        missing.append(key)
    # a MatMul without a named bias (a tied lm_head) must equal some weight already set
    for w in loose_all:
        wt = w.T.astype(np.float32)
        match = [k for k, v in got.items() if v.shape == wt.shape]
        if match:
            report["max_conflict"] = max(report["max_conflict"], min(float(np.abs(got[k] - wt).max()) for k in match))
            report["tied_checks"] += 1
    missing = [k for k in missing if not _ok_to_miss(model, k)]
    if missing:
        raise SystemExit(f"no ONNX tensor for torch weights {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    with torch.no_grad():
        model.load_state_dict({k: torch.from_numpy(v) for k, v in got.items()}, strict=False)
        # tied aliases were loaded in turn; make sure every alias ends up with the value that was set for it
        now = model.state_dict()
        for k, v in got.items():
            report["max_conflict"] = max(report["max_conflict"], float(np.abs(now[k].numpy() - v).max()))
    return report


def _ok_to_miss(model, key: str) -> bool:
    """Buffers a model derives itself (position ids and the like)."""
    return key.endswith(("position_ids", "num_batches_tracked"))


# --------------------------------------------------------------------------- images


def make_images(folder: Path, n: int, digits_only: bool, chunk: int, seed: int) -> list[Path]:
    """n images in folder/partNN/ (chunk per part), varied copies of the test images; returns the parts."""
    from PIL import Image

    rng = random.Random(seed)
    sources = sorted(DIGITS.glob("*.png"))
    if not digits_only:
        sources += sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    parts: list[Path] = []
    for i in range(n):
        src = sources[i % len(sources)]
        with Image.open(src) as im:
            img = im.copy()
        if img.mode.startswith("I"):
            # 16-bit grey (some digits): made 8-bit the way tfm reads it (x/257), because Pillow's
            # convert("RGB") -- the plain loop's and Hugging Face's -- clips it to white instead
            wide = np.asarray(img).astype(np.uint32)
            img = Image.fromarray(((wide + 128) // 257).astype(np.uint8), "L")
        w, h = img.size
        # a slightly cropped box, 85..100% of each side
        cw, ch = max(1, round(w * rng.uniform(0.85, 1.0))), max(1, round(h * rng.uniform(0.85, 1.0)))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((left, top, left + cw, top + ch))
        if src.parent == DIGITS:
            side = rng.randint(28, 300)
            img = img.resize((side, round(side * rng.uniform(0.9, 1.1))), Image.BILINEAR)
            ext = ".jpg" if i % 4 == 3 else ".png"
        else:
            long = rng.randint(200, 640)
            scale = long / max(img.size)
            img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.BICUBIC)
            ext = ".png" if i % 4 == 3 else ".jpg"
        part = folder / f"part{i // chunk:02d}"
        if not parts or parts[-1] != part:
            part.mkdir(parents=True, exist_ok=True)
            parts.append(part)
        stem = f"{src.stem}_{i:04d}"
        if ext == ".jpg":
            img.save(part / (stem + ext), quality=92)
        else:
            img.save(part / (stem + ext))
    return parts


# --------------------------------------------------------------------------- variants


class TfmClassify:
    """tfm's classify path, with the stage built once (like the plain loop's session)."""

    def __init__(self, model, threads: int, batch_size: int, workers: int | None, logits: bool = False):
        from tfm.core.engine import Engine
        from tfm.core.vision import ClassifyStage, preprocessor

        self.pre = preprocessor(model, None)
        self.stage = ClassifyStage(model, Engine("cpu", threads), top_k=5, logits=logits, preprocess=self.pre)
        self.batch_size, self.workers = batch_size, workers
        self.batches: list[int] = []
        run = self.stage.run

        def counted_run(items):  # an instance attribute: tfm's class is untouched
            self.batches.append(len(items))
            return run(items)

        self.stage.run = counted_run

    def __call__(self, folder: Path, writer=None) -> None:
        from tfm.core.pipeline import run_stage
        from tfm.core.stream import RecordWriter
        from tfm.core.vision import decoded, image_paths

        self.batches = []
        paths = list(image_paths([str(folder)], None, True))  # as `tfm classify DIR` does
        writer = writer if writer is not None else RecordWriter(NullSink(), "json")
        status = run_stage(decoded(paths, self.pre, self.workers), self.stage, writer, batch_size=self.batch_size)
        if status != 0:
            raise SystemExit(f"tfm run_stage exited {status}")


class PlainClassify:
    """The hand-written loop: sequential PIL decode + the same Preprocessor, session.run per batch."""

    def __init__(self, onnx_path: Path, pre, threads: int, batch_size: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
        self.pre, self.batch_size = pre, batch_size
        self.batches: list[int] = []
        self.t_decode = self.t_run = 0.0

    def __call__(self, files: list[str], keep: list | None = None) -> None:
        from PIL import Image

        self.batches = []
        for start in range(0, len(files), self.batch_size):
            t0 = time.perf_counter()
            pixels = []
            for path in files[start:start + self.batch_size]:
                with Image.open(path) as im:
                    pixels.append(self.pre(im.convert("RGB")))
            batch = np.stack(pixels)
            t1 = time.perf_counter()
            logits = self.session.run(["logits"], {"pixel_values": batch})[0]
            np.argsort(-logits, axis=1)[:, :5]
            self.t_decode += t1 - t0
            self.t_run += time.perf_counter() - t1
            self.batches.append(len(pixels))
            if keep is not None:
                keep.append(logits)


class TorchClassify:
    """Hugging Face: PIL decode, ViTImageProcessor, ViTForImageClassification in PyTorch."""

    def __init__(self, model, threads: int, batch_size: int, torch_dir: Path | None):
        import torch
        from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

        torch.set_num_threads(threads)
        self.torch = torch
        self.proc = ViTImageProcessor.from_pretrained(str(torch_dir or model.path))
        if torch_dir is not None:
            self.model = ViTForImageClassification.from_pretrained(str(torch_dir))
            self.source = f"checkpoint {torch_dir}"
        else:
            self.model = ViTForImageClassification(ViTConfig.from_pretrained(str(model.path)))
            rep = load_onnx_weights(self.model, [(model.onnx(), [])])
            self.source = (f"rebuilt from {model.onnx().name}: {rep['tensors']} named tensors, "
                           f"{rep['linear']} MatMul weights matched through their bias Add")
        self.model.eval()
        self.batch_size = batch_size
        self.batches: list[int] = []

    def __call__(self, files: list[str], keep: list | None = None) -> None:
        from PIL import Image

        self.batches = []
        for start in range(0, len(files), self.batch_size):
            images = []
            for path in files[start:start + self.batch_size]:
                with Image.open(path) as im:
                    images.append(im.convert("RGB"))
            pixel_values = self.proc(images=images, return_tensors="pt")["pixel_values"]
            with self.torch.inference_mode():
                logits = self.model(pixel_values=pixel_values).logits
            logits.topk(min(5, logits.shape[1]), dim=1)
            self.batches.append(len(images))
            if keep is not None:
                keep.append(logits.numpy())


# --------------------------------------------------------------------------- main


def summary(batches: list[int]) -> str:
    if not batches:
        return "-"
    return f"{len(batches)} batches, mean {statistics.mean(batches):.1f} (min {min(batches)})"


def label_of(path: str) -> str | None:
    m = re.match(r"d(\d)_", Path(path).name)
    return m.group(1) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit-digits", help="an image-classification model (name or folder)")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="tfm's decoding threads (default: tfm's own)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=100, help="images per timed run (one sub-folder each)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--torch-dir", type=Path, default=None,
                    help="Hugging Face checkpoint folder for the PyTorch variant (default: rebuilt from the ONNX graph)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch variant")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="only cProfile the tfm path on N images (main thread; decoding threads are not seen)")
    args = ap.parse_args()

    from tfm.core.modeldir import resolve

    model = resolve(args.model, task="image-classification")
    digits_only = model.name == "vit-digits" or Path(model.path).name == "vit-digits"
    tmp = Path(tempfile.mkdtemp(prefix="tfm-bench-classify-"))
    try:
        n = args.profile or args.images
        chunk = n if args.profile else (args.chunk if args.chunk > 0 else n)
        parts = make_images(tmp, n, digits_only, chunk, args.seed)
        tfm = TfmClassify(model, args.threads, args.batch_size, args.workers)
        if args.profile:
            tfm(parts[0])  # warm-up
            prof = cProfile.Profile()
            prof.enable()
            tfm(parts[0])
            prof.disable()
            print(f"cProfile of the tfm classify path on {n} images (main thread only):")
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
            return
        run_bench(args, model, tmp, parts, tfm, digits_only)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_bench(args, model, tmp: Path, parts: list[Path], tfm: TfmClassify, digits_only: bool) -> None:
    from tfm.core.vision import image_paths

    files = [[p for p, err in image_paths([str(part)], None, True) if err is None] for part in parts]
    all_files = [f for fs in files for f in fs]
    nbytes = sum(os.path.getsize(f) for f in all_files)
    sizes = []
    from PIL import Image

    for f in all_files:
        with Image.open(f) as im:
            sizes.append(max(im.size))
    print(f"model {model.name} ({model.path}), {len(all_files)} images ({nbytes / 1e6:.1f} MB, "
          f"{'digits' if digits_only else 'digits and photos'}, long side {min(sizes)}..{max(sizes)} px, "
          f"{sum(f.endswith('.png') for f in all_files)} PNG / {sum(f.endswith('.jpg') for f in all_files)} JPEG), "
          f"batch size {args.batch_size}, {args.threads} threads, tfm decoding workers "
          f"{args.workers or min(4, os.cpu_count() or 1)}, {args.rounds} rounds of {len(parts)} alternating chunks, "
          f"{os.cpu_count()} CPUs, TFM_THREADS={os.environ.get('TFM_THREADS', 'unset')}")

    plain = PlainClassify(model.onnx(), tfm.pre, args.threads, args.batch_size)
    torch_v = None
    if args.no_torch:
        print("torch: skipped (--no-torch)")
    elif model.config.get("model_type") != "vit":
        print(f"torch: skipped (model_type {model.config.get('model_type')!r} is not vit)")
    else:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as e:
            print(f"torch: skipped ({e})")
        else:
            torch_v = TorchClassify(model, args.threads, args.batch_size, args.torch_dir)
            print(f"torch {torch.__version__}, transformers {transformers.__version__}, weights {torch_v.source}, "
                  f"attention {getattr(torch_v.model.config, '_attn_implementation', '?')}")

    # ---- agreement (and warm-up): all images once through each variant
    checker = TfmClassify(model, args.threads, args.batch_size, args.workers, logits=True)
    keep = KeepWriter()
    for part in parts:
        checker(part, writer=keep)
    tfm_logits = np.stack([r["logits"] for r in keep.records])
    tfm_paths = [r["path"] for r in keep.records]
    if tfm_paths != all_files:
        raise SystemExit("tfm visited the images in another order than image_paths lists them")
    plain_out: list = []
    for fs in files:
        plain(fs, keep=plain_out)
    plain_logits = np.concatenate(plain_out)
    diff = float(np.abs(tfm_logits - plain_logits).max())
    print(f"agreement on {len(all_files)} images: max |tfm - plain| logits = {diff:.2e}")
    top = plain_logits.argmax(1)
    if digits_only and model.config.get("id2label"):
        names = [model.config["id2label"].get(str(i), str(i)) for i in top]
        right = sum(name == label_of(f) for name, f in zip(names, all_files))
        print(f"  vit-digits names {right}/{len(all_files)} of the benchmark images right (the label is in the file name)")
    torch_ok = None
    if torch_v is not None:
        torch_out: list = []
        for fs in files:
            torch_v(fs, keep=torch_out)
        torch_logits = np.concatenate(torch_out)
        tdiff = float(np.abs(torch_logits - plain_logits).max())
        # the same few images through tfm's preprocessing, so only the weights differ
        few = np.stack([tfm.pre(Image.open(f).convert("RGB")) for f in all_files[:8]])
        with torch_v.torch.inference_mode():
            t_few = torch_v.model(pixel_values=torch_v.torch.from_numpy(few)).logits.numpy()
        o_few = plain.session.run(["logits"], {"pixel_values": few})[0]
        wdiff = float(np.abs(t_few - o_few).max())
        hf_px = torch_v.proc(images=[Image.open(f).convert("RGB") for f in all_files[:8]],
                             return_tensors="np")["pixel_values"]
        pdiff = float(np.abs(hf_px - few).max())
        torch_ok = wdiff < 1e-4
        print(f"  torch vs onnxruntime logits on 8 images, same pixel_values: max diff {wdiff:.2e} "
              f"({'< 1e-4: the weights are the same' if torch_ok else '>= 1e-4: WEIGHTS DIFFER'})")
        print(f"  ViTImageProcessor vs tfm Preprocessor pixel_values on 8 images: max diff {pdiff:.2e}; "
              f"whole run, torch vs plain logits: max diff {tdiff:.2e}, same top-1 "
              f"{int((torch_logits.argmax(1) == top).sum())}/{len(top)}")
    # warm-up of the timed variants (arenas, thread pools)
    tfm(parts[0])

    variants = {"tfm json": lambda c: tfm(parts[c]), "plain onnxruntime": lambda c: plain(files[c])}
    if torch_v is not None:
        variants["torch (HF)"] = lambda c: torch_v(files[c])
    owners = {"tfm json": tfm, "plain onnxruntime": plain, "torch (HF)": torch_v}
    names = list(variants)
    base = "plain onnxruntime"
    batches = {k: [] for k in names}
    plain.t_decode = plain.t_run = 0.0

    def after(r, c, k, _):
        if r == 0:
            batches[k] += owners[k].batches

    times, turns = interleave(variants, len(parts), args.rounds, after)
    paired = {k: [t[base] / t[k] for t in turns] for k in names}

    n = len(all_files)
    best = {k: n / sum(min(t) for t in times[k]) for k in names}
    median = {k: n / sum(statistics.median(t) for t in times[k]) for k in names}
    ratio = {k: statistics.median(paired[k]) for k in names}
    print()
    print(f"{'variant':<20}{'best img/s':>12}{'median img/s':>14}{'vs plain (best)':>17}{'(paired)':>10}  batches")
    for k in names:
        print(f"{k:<20}{best[k]:>12.1f}{median[k]:>14.1f}{best[k] / best[base]:>17.3f}{ratio[k]:>10.3f}  "
              f"{summary(batches[k])}")
    print(f"best = sum over the {len(parts)} chunks of each chunk's fastest of {args.rounds} runs; median likewise; "
          "paired = median over all (round, chunk) of plain time / variant time of back-to-back runs")
    spent = plain.t_decode + plain.t_run
    print(f"plain loop, all rounds: decode + preprocess {plain.t_decode / spent:.0%} of its time, "
          f"session.run (+ stack, top 5) {plain.t_run / spent:.0%}")

    print()
    r_plain = best["tfm json"] / best[base]
    print(f"classify: tfm {best['tfm json']:.1f} img/s, plain onnxruntime {best[base]:.1f} img/s, ratio tfm/plain "
          f"{r_plain:.2f} (paired {ratio['tfm json']:.2f}; target >= 0.85: {'meets' if r_plain >= 0.85 else 'MISSES'})")
    if torch_v is not None:
        r_torch = best["tfm json"] / best["torch (HF)"]
        paired_torch = statistics.median(a / b for a, b in zip(paired["tfm json"], paired["torch (HF)"]))
        flag = "" if torch_ok else "; torch weights did NOT match, ratio not meaningful"
        print(f"classify: tfm {best['tfm json']:.1f} img/s, torch (HF) {best['torch (HF)']:.1f} img/s, ratio tfm/torch "
              f"{r_torch:.2f} (paired {paired_torch:.2f}; target >= 1.00: {'meets' if r_torch >= 1 else 'MISSES'}{flag})")
    else:
        print("classify: torch (HF) skipped")


if __name__ == "__main__":
    main()
