#!/usr/bin/env python3
"""Recipe for tfm's embedded default image classifier, vit-digits.

Build-time only: needs torch, transformers, optimum-onnx (``optimum-cli``), onnx,
onnxruntime, scikit-learn, pillow and numpy. Nothing here is imported by tfm at
run time.

No registry package carries a ViT image classifier, so tfm trains one: a Hugging
Face ``ViTForImageClassification`` (32x32 RGB input, patch 8 -> 4x4 = 16 patches
+ [CLS], 4 layers) on scikit-learn's ``load_digits()`` (the UCI "Optical
Recognition of Handwritten Digits" data, 1,797 8x8 images, 10 classes), exported
with Optimum exactly like a hub model.

Steps:

1. split the 1,797 digits stratified with a fixed seed: 70% train, 10%
   validation, 20% test. The test split is never used for training or model
   selection;
2. build 8-bit images from the digits (0..16 scaled to 0..255, light ink on a
   dark background as stored) and augment them at the PIL/uint8 level: random
   polarity (50%), upscaling of the 8x8 source to 8..256 px with assorted
   resamplers and slight aspect changes, thicker/thinner strokes (max/min
   filters), small rotations, random margins (which also shift the digit), blur,
   ink/paper levels and tints (contrast), gaussian noise. Every training image
   then goes through the shipped ``ViTImageProcessor`` (convert to RGB, bilinear
   resize to 32x32, rescale 1/255, normalise mean 0.5 std 0.5), exactly what a
   user's image gets;
3. train with AdamW + warmup + cosine decay and label smoothing on one CPU
   thread; every ``--eval-every`` steps measure validation accuracy (validation
   split in both polarities, upscaled to 8, 28, 64 and 200 px) and keep the best
   checkpoint;
4. ``save_pretrained`` the best model and the processor into a temp folder, run
   ``optimum-cli export onnx --model TMP --task image-classification OUT``,
   check that the ONNX logits match torch on the test split, and measure the
   held-out test accuracy through the ONNX model with the processor's
   preprocessing (both polarities, 8/28/64/200 px, plus a seeded augmented set);
5. write the model folder (config.json, preprocessor_config.json, model.onnx,
   MODEL_CARD.md, LICENSE, tfm-model.json) and 20 test PNGs made from test-split
   digits (``--test-images``, default tests/data/digits) with labels.csv.

Usage::

    nice -n 15 python models/recipes/vit_digits.py [--out DIR] [--test-images DIR]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.metadata as md
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from all_minilm_l6_v2 import sha256  # noqa: E402  (shared by the recipes)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "models" / "vit-digits"
DEFAULT_TEST_IMAGES = REPO_ROOT / "tests" / "data" / "digits"

MODEL_NAME = "vit-digits"
MANIFEST = "tfm-model.json"
CARD = "MODEL_CARD.md"
SHIPPED = ["config.json", "preprocessor_config.json", "model.onnx"]

SEED = 0
SPLIT_SEED = 0
IMAGE_SIZE = 32
EVAL_SIZES = (8, 28, 64, 200)  # source sizes the test split is upscaled to (bilinear)
ORT_THREADS = 1

MODEL_CONFIG = dict(
    image_size=IMAGE_SIZE,
    patch_size=8,
    num_channels=3,
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=256,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.0,
    qkv_bias=True,
)

PROCESSOR_CONFIG = dict(
    do_convert_rgb=True,
    do_resize=True,
    size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    resample=2,  # PIL.Image.BILINEAR
    do_rescale=True,
    rescale_factor=1 / 255,
    do_normalize=True,
    image_mean=[0.5, 0.5, 0.5],
    image_std=[0.5, 0.5, 0.5],
)

TRAIN = dict(
    steps=2500,
    batch_size=128,
    lr=1e-3,
    weight_decay=0.05,
    warmup=150,
    label_smoothing=0.1,
    eval_every=100,
    grad_clip=1.0,
)


# --------------------------------------------------------------------------- data


def load_data():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float64), d.target.astype(np.int64)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Stratified 70/10/20 split with a fixed seed; sorted index arrays."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test = train_test_split(
        idx, test_size=0.2, stratify=labels, random_state=SPLIT_SEED
    )
    train, val = train_test_split(
        rest, test_size=0.125, stratify=labels[rest], random_state=SPLIT_SEED
    )  # 0.125 * 80% = 10%
    out = {"train": np.sort(train), "validation": np.sort(val), "test": np.sort(test)}
    assert not (set(out["train"]) & set(out["test"])) and not (set(out["validation"]) & set(out["test"]))
    assert sum(len(v) for v in out.values()) == len(labels)
    return out


def indices_hash(idx: np.ndarray) -> str:
    return hashlib.sha256(",".join(str(int(i)) for i in idx).encode()).hexdigest()


def to_uint8(img16: np.ndarray) -> np.ndarray:
    """0..16 -> 0..255 (light ink on dark, as stored)."""
    return np.clip(np.rint(img16 * (255.0 / 16.0)), 0, 255).astype(np.uint8)


def plain_image(img16: np.ndarray, size: int, dark_on_light: bool):
    """The evaluation rendering: 8-bit, optionally inverted, bilinear upscale, RGB."""
    from PIL import Image

    a = to_uint8(img16)
    if dark_on_light:
        a = 255 - a
    im = Image.fromarray(a, mode="L")
    if size != im.width:
        im = im.resize((size, size), Image.BILINEAR)
    return im.convert("RGB")


RESAMPLERS = None


def augment(img16: np.ndarray, rng: np.random.Generator):
    """A random rendering of one digit as an ordinary 8-bit picture (PIL RGB)."""
    from PIL import Image, ImageFilter

    global RESAMPLERS
    if RESAMPLERS is None:
        R = Image.Resampling
        RESAMPLERS = [R.NEAREST, R.BILINEAR, R.BICUBIC, R.LANCZOS, R.BOX, R.HAMMING]

    # 1. 8-bit source, ink bright (float in 0..1 later), random gamma
    a = to_uint8(img16).astype(np.float32) / 255.0
    if rng.random() < 0.3:
        a = a ** float(np.exp(rng.uniform(-0.5, 0.5)))
    im = Image.fromarray(np.rint(a * 255).astype(np.uint8), mode="L")

    # 2. upscale 8 -> S (log-uniform 8..256), slight aspect change
    s = int(round(math.exp(rng.uniform(math.log(8), math.log(256)))))
    if rng.random() < 0.15:
        s = 8
    w = s
    h = s
    if s > 8 and rng.random() < 0.5:
        h = max(8, int(round(s * math.exp(rng.uniform(-0.15, 0.15)))))
    if (w, h) != (8, 8):
        im = im.resize((w, h), RESAMPLERS[rng.integers(len(RESAMPLERS))])

    # 3. stroke thickness (ink is bright: max filter = thicker)
    if min(w, h) >= 16 and rng.random() < 0.35:
        k = 3 if min(w, h) < 64 else int(rng.choice([3, 5]))
        if rng.random() < 0.6:
            im = im.filter(ImageFilter.MaxFilter(k))
        elif min(w, h) >= 32:  # thinning a small image erases strokes
            im = im.filter(ImageFilter.MinFilter(k))

    # 4. margins (asymmetric -> shift); sometimes a tiny crop instead
    if rng.random() < 0.8:
        base = max(w, h)
        fr = rng.uniform(0.0, 0.3)
        m = [int(round(base * fr * rng.uniform(0.5, 1.5))) for _ in range(4)]  # l, t, r, b
        canvas = Image.new("L", (w + m[0] + m[2], h + m[1] + m[3]), 0)
        canvas.paste(im, (m[0], m[1]))
        im = canvas
    elif rng.random() < 0.3 and min(w, h) >= 16:
        c = [int(round(min(w, h) * rng.uniform(0, 0.05))) for _ in range(4)]
        im = im.crop((c[0], c[1], w - c[2], h - c[3]))

    # 5. small rotation around the centre, background fill
    if rng.random() < 0.7:
        im = im.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, fillcolor=0)

    # 6. blur
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 0.7)) * max(im.size) / 32))

    # 7. levels: ink and paper (contrast, polarity), sometimes tinted per channel
    dark_on_light = rng.random() < 0.5
    contrast = rng.uniform(0.45, 1.0)  # |ink - paper| as a fraction of 255
    mid = rng.uniform(0.5 - (1 - contrast) / 2, 0.5 + (1 - contrast) / 2)
    lo, hi = mid - contrast / 2, mid + contrast / 2
    ink, paper = (lo, hi) if dark_on_light else (hi, lo)
    ramp = np.arange(256, dtype=np.float64) / 255.0

    def lut(i, p):
        return np.clip(np.rint(255 * (p + (i - p) * ramp)), 0, 255).astype(np.uint8).tolist()

    if rng.random() < 0.25:  # coloured ink / paper
        inks = np.clip(ink + rng.uniform(-0.15, 0.15, 3), 0, 1)
        papers = np.clip(paper + rng.uniform(-0.15, 0.15, 3), 0, 1)
        im = Image.merge("RGB", [im.point(lut(inks[c], papers[c])) for c in range(3)])
    else:
        im = im.point(lut(ink, paper))

    # 8. gaussian noise (grey noise on a grey image, per channel on a tinted one)
    if rng.random() < 0.4:
        x = np.asarray(im, dtype=np.float32)
        x = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(rng.uniform(0.01, 0.08) * 255)
        im = Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), mode=im.mode)
    return im.convert("RGB")


def make_processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(**PROCESSOR_CONFIG)


def preprocess(processor, images) -> np.ndarray:
    return processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)


def eval_sets(processor, images, labels, idx) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'dark_on_light_8px': (pixel_values, labels), ...} for one split."""
    out = {}
    for dark in (True, False):
        pol = "dark_on_light" if dark else "light_on_dark"
        for s in EVAL_SIZES:
            ims = [plain_image(images[i], s, dark) for i in idx]
            out[f"{pol}_{s}px"] = (preprocess(processor, ims), labels[idx])
    return out


def augmented_set(processor, images, labels, idx, seed):
    rng = np.random.default_rng(seed)
    ims = [augment(images[i], rng) for i in idx for _ in range(2)]
    lab = np.repeat(labels[idx], 2)
    return preprocess(processor, ims), lab


# --------------------------------------------------------------------------- train


def build_model():
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        **MODEL_CONFIG,
        num_labels=10,
        id2label={i: str(i) for i in range(10)},
        label2id={str(i): i for i in range(10)},
    )
    return ViTForImageClassification(cfg)


def torch_logits(model, x: np.ndarray, bs: int = 512) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            outs.append(model(pixel_values=torch.from_numpy(x[i : i + bs])).logits.numpy())
    return np.concatenate(outs)


def train(images, labels, splits, processor, steps: int, log) -> tuple[object, dict]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    model = build_model()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters")
    rng = np.random.default_rng(SEED)

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "position_embeddings" in n or "cls_token" in n else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": TRAIN["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=TRAIN["lr"], betas=(0.9, 0.999),
    )

    def lr_at(step):
        if step < TRAIN["warmup"]:
            return (step + 1) / TRAIN["warmup"]
        t = (step - TRAIN["warmup"]) / max(1, steps - TRAIN["warmup"])
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)

    val = eval_sets(processor, images, labels, splits["validation"])
    val_x = np.concatenate([v[0] for v in val.values()])
    val_y = np.concatenate([v[1] for v in val.values()])

    train_idx = splits["train"]
    order = rng.permutation(train_idx)
    pos = 0
    best = {"val_acc": -1.0, "step": 0}
    best_state = None
    history = []
    t0 = time.time()
    loss_sum, loss_n = 0.0, 0
    for step in range(steps):
        if pos + TRAIN["batch_size"] > len(order):
            order = rng.permutation(train_idx)
            pos = 0
        batch = order[pos : pos + TRAIN["batch_size"]]
        pos += TRAIN["batch_size"]
        x = preprocess(processor, [augment(images[i], rng) for i in batch])
        y = torch.from_numpy(labels[batch])
        model.train()
        logits = model(pixel_values=torch.from_numpy(x)).logits
        loss = F.cross_entropy(logits, y, label_smoothing=TRAIN["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()
        sched.step()
        loss_sum += loss.item()
        loss_n += 1
        if (step + 1) % TRAIN["eval_every"] == 0 or step + 1 == steps:
            pred = torch_logits(model, val_x).argmax(-1)
            acc = float((pred == val_y).mean())
            history.append({"step": step + 1, "loss": loss_sum / loss_n, "val_acc": acc})
            mark = ""
            if acc > best["val_acc"]:
                best = {"val_acc": acc, "step": step + 1}
                best_state = copy.deepcopy(model.state_dict())
                mark = " *"
            log(
                f"step {step + 1:5d}  loss {loss_sum / loss_n:.4f}  val {acc:.4f}  "
                f"lr {sched.get_last_lr()[0]:.2e}  {time.time() - t0:6.0f}s{mark}"
            )
            loss_sum, loss_n = 0.0, 0
    model.load_state_dict(best_state)
    model.eval()
    per_set = {}
    for k, (vx, vy) in val.items():
        per_set[k] = float((torch_logits(model, vx).argmax(-1) == vy).mean())
    info = {
        "steps": steps,
        "best_step": best["step"],
        "val_acc": best["val_acc"],
        "val_per_set": per_set,
        "train_seconds": time.time() - t0,
        "history": history,
        "n_params": n_params,
    }
    return model, info


# --------------------------------------------------------------------------- export


def export_onnx(model, processor, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="tfm-vit-digits-src-") as src:
        model.save_pretrained(src)
        processor.save_pretrained(src)
        cmd = [
            sys.executable, "-m", "optimum.commands.optimum_cli",
            "export", "onnx", "--model", src, "--task", "image-classification", str(out),
        ]
        print("+ optimum-cli " + " ".join(cmd[3:]), flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            sys.exit(f"error: optimum export failed (exit {proc.returncode})")
    for name in SHIPPED:
        if not (out / name).is_file():
            sys.exit(f"error: the export wrote no {out / name}")
    return out / "model.onnx"


def session(model_path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = ORT_THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])


def ort_logits(sess, x: np.ndarray, bs: int = 512) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + bs]})[0] for i in range(0, len(x), bs)])


def graph_io(model_path: Path) -> dict:
    import onnx

    m = onnx.load(str(model_path))

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    def dtype(v):
        return onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower()

    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "inputs": [{"name": v.name, "type": dtype(v), "shape": dims(v)} for v in m.graph.input],
        "outputs": [{"name": v.name, "type": dtype(v), "shape": dims(v)} for v in m.graph.output],
        "opset": opset,
    }


# --------------------------------------------------------------------------- test images


def load_user_image(path: Path):
    """How a user's file is read for the check: 16-bit grey scaled to 8 bits, then RGB."""
    from PIL import Image

    im = Image.open(path)
    im.load()
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(np.rint(a * 255.0 / hi), 0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB")


# (polarity, size, mode, margin fraction): one per digit and polarity, digit d = row index
TEST_IMAGE_PLAN = {
    "dark": [
        (8, "L", 0.0), (28, "RGB", 0.0), (64, "L", 0.0), (100, "RGB", 0.15), (300, "L", 0.15),
        (28, "P", 0.0), (64, "I;16", 0.0), (100, "L", 0.0), (8, "RGB", 0.0), (64, "RGB", 0.1),
    ],
    "light": [
        (64, "RGB", 0.0), (8, "L", 0.0), (100, "L", 0.15), (28, "RGB", 0.0), (64, "L", 0.1),
        (300, "L", 0.15), (8, "RGB", 0.0), (28, "L", 0.0), (100, "RGB", 0.0), (64, "L", 0.0),
    ],
}


def write_test_images(images, labels, test_idx, out: Path) -> list[dict]:
    """20 PNGs from the test split: for each digit its first test example drawn
    dark-on-white, its second white-on-black. Bicubic upscale, optional margin."""
    from PIL import Image

    if out.exists():
        for p in out.iterdir():
            if p.suffix in (".png", ".csv"):
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for pol_i, pol in enumerate(("dark", "light")):
        for d in range(10):
            src = int([i for i in test_idx if labels[i] == d][pol_i])
            size, mode, margin = TEST_IMAGE_PLAN[pol][d]
            a = to_uint8(images[src])
            if pol == "dark":
                a = 255 - a
            bg = 255 if pol == "dark" else 0
            inner = size - 2 * int(round(size * margin))
            im = Image.fromarray(a, mode="L")
            if inner != 8:
                im = im.resize((inner, inner), Image.BICUBIC)
            canvas = Image.new("L", (size, size), bg)
            canvas.paste(im, ((size - inner) // 2, (size - inner) // 2))
            if mode == "RGB":
                img = canvas.convert("RGB")
            elif mode == "P":
                img = canvas.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=16)
            elif mode == "I;16":
                a16 = np.asarray(canvas, dtype=np.uint16) * 257
                img = Image.fromarray(a16)  # mode I;16
                assert img.mode == "I;16", img.mode
            else:
                img = canvas
            name = f"d{d}_{pol}_{size}.png"
            img.save(out / name, optimize=True)
            rows.append({"file": name, "label": d, "index": src, "mode": mode, "size": size, "margin": margin})
    with open(out / "labels.csv", "w", encoding="utf-8") as f:
        f.write("file,label\n")
        for r in rows:
            f.write(f"{r['file']},{r['label']}\n")
    return rows


# --------------------------------------------------------------------------- writing


LICENCE_TEXT = """vit-digits (a model trained and shipped by tfm)
===============================================

Model weights (model.onnx) and configuration files: released by the tfm project
under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
Unless required by applicable law or agreed to in writing, they are distributed
on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND.

Training data: "Optical Recognition of Handwritten Digits" by E. Alpaydin and
C. Kaynak (1998), UCI Machine Learning Repository,
https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits,
licensed under Creative Commons Attribution 4.0
International (CC BY 4.0, https://creativecommons.org/licenses/by/4.0/).
Obtained through scikit-learn's sklearn.datasets.load_digits() (scikit-learn is
BSD-3-Clause). The test images in tfm's tests/data/digits/ are renderings of
digits from this data set (CC BY 4.0, same attribution).
"""


def model_card(info: dict, checksums: dict[str, str], sizes: dict[str, int]) -> str:
    ex = info["export"]
    acc = info["accuracy"]
    tr = info["train"]
    sp = info["splits"]
    io = info["graph"]
    cfg = info["config"]

    def pct(v):
        return f"{100 * v:.2f}%"

    size_rows = "\n".join(
        f"| {s} px | {pct(acc[f'test_dark_on_light_{s}px'])} | {pct(acc[f'test_light_on_dark_{s}px'])} "
        f"| {pct(tr['val_per_set'][f'dark_on_light_{s}px'])} | {pct(tr['val_per_set'][f'light_on_dark_{s}px'])} |"
        for s in EVAL_SIZES
    )
    file_rows = "\n".join(f"| `{n}` | {sizes[n]:,} | `{checksums[n]}` |" for n in sorted(checksums))
    ios = "\n".join(
        f"  - {kind}: `{v['name']}` {v['type']} {v['shape']}"
        for kind in ("inputs", "outputs") for v in io[kind]
    )
    test_list = ", ".join(str(int(i)) for i in sp["test"])
    test_images_text = ""
    if info["test_images_correct"] is not None:
        test_images_text = (
            "tfm's `tests/data/digits/` holds 20 PNGs made from test-split digits (for each\n"
            "digit its first test example dark on white, its second white on black; 8–300 px;\n"
            "L, RGB, P and 16-bit `I;16` modes; bicubic upscales, some with a margin);\n"
            f"this model classifies {info['test_images_correct']}/20 of them correctly.\n"
        )
    hist = ", ".join(f"{h['step']}: {100 * h['val_acc']:.1f}" for h in tr["history"])
    return f"""# {MODEL_NAME} (tfm default image classifier)

A small Vision Transformer (`ViTForImageClassification`) that reads **one
handwritten digit** (0–9) from a picture. Trained by tfm on scikit-learn's
`load_digits()` and exported with Optimum exactly like a hub model
(`optimum-cli export onnx --task image-classification`), so it goes through the
same loading path as e.g. `google/vit-base-patch16-224`.

- Architecture: ViT, image {cfg['image_size']}×{cfg['image_size']}, {cfg['num_channels']} channels,
  patch {cfg['patch_size']} (4×4 = 16 patches + [CLS] = 17 tokens), hidden size
  {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']} heads,
  MLP {cfg['intermediate_size']}, GELU; classifier on the [CLS] token;
  {tr['n_params']:,} parameters, fp32.
- Labels: `id2label` = {{0: "0", 1: "1", …, 9: "9"}} (the label is the digit).
- Graph (ONNX opset {io['opset']}, self-contained):
{ios}
  Height and width are declared dynamic by the exporter, but the position
  embeddings are fixed: feed exactly 32×32 (the processor does).

## What it expects

- A picture of a **single, roughly centred, roughly square digit**, of any size
  (8×8 up to photos of a few hundred pixels), in **either polarity**: dark ink on
  light paper or light ink on a dark background. Greyscale or colour.
- Preprocessing is `preprocessor_config.json`, a standard `ViTImageProcessor`:
  convert to RGB, resize to 32×32 with PIL bilinear (`resample=2`; PIL
  antialiases when it shrinks), rescale by 1/255, normalise with mean 0.5 and
  std 0.5 per channel (so pixel values land in [-1, 1]). The image is squashed,
  not cropped: a very wide or tall picture distorts the digit.
- 16-bit images must be scaled to 8 bits (÷257) before the RGB conversion;
  PIL's own `I;16` → `RGB` conversion clips everything above 255 to white.

## What it is not good for

Photos of multi-digit numbers (house numbers, meters, forms), letters or other
symbols (it always answers one of 0–9, with no "none of these" class), digits
that fill only a small corner of a large picture, heavily cluttered or textured
backgrounds, and strongly rotated or mirrored digits. The training data are 8×8
downsampled digits from 13 writers; typeset digits and unusual handwriting styles
were never seen. Treat the softmax score as a ranking, not a calibrated
probability (trained with label smoothing).

## Data

scikit-learn `sklearn.datasets.load_digits()` (scikit-learn {info['sklearn_version']}):
1,797 8×8 images, values 0..16 (ink counts from 4×4 blocks of 32×32 bitmaps),
10 classes, written by 13 people. This is the test part of the UCI "Optical
Recognition of Handwritten Digits" data set (E. Alpaydin, C. Kaynak, 1998,
<https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits>;
its training part came from 30 other writers), licensed CC BY 4.0 (UCI);
scikit-learn is BSD-3-Clause.

### Split

Stratified, `sklearn.model_selection.train_test_split` with `random_state={SPLIT_SEED}`:
first 20% test, then 12.5% of the rest as validation (70% / 10% / 20%).
The test split was never used for training or model selection.

| split | images | sha256 of the sorted indices joined with "," |
|---|---:|---|
| train | {len(sp['train'])} | `{indices_hash(sp['train'])}` |
| validation | {len(sp['validation'])} | `{indices_hash(sp['validation'])}` |
| test | {len(sp['test'])} | `{indices_hash(sp['test'])}` |

<details><summary>Test indices (into <code>load_digits().images</code>)</summary>

{test_list}

</details>

## Training

```
nice -n 15 python models/recipes/vit_digits.py
```

(torch {ex['torch']} on one CPU thread, transformers {ex['transformers']}; seeds fixed.)
Each digit becomes an 8-bit picture (0..16 → 0..255, light ink on dark as
stored) and is augmented at the PIL/uint8 level before going through the very
processor above: random polarity (50%), upscaling of the 8×8 source to 8–256 px
(log-uniform) with nearest/bilinear/bicubic/Lanczos/box/Hamming resampling and
up to ±15% aspect change, thicker or thinner strokes (3/5 px max/min filters),
rotations up to ±12°, random margins of 0–45% per side (which also shift the
digit) or small crops, Gaussian blur, random ink/paper levels (contrast 0.45–1)
with occasional colour tints, gamma, and Gaussian noise.

AdamW (lr {TRAIN['lr']}, weight decay {TRAIN['weight_decay']}, betas 0.9/0.999),
{TRAIN['warmup']} warmup steps then cosine decay, batch {TRAIN['batch_size']},
{tr['steps']} steps (≈{tr['steps'] * TRAIN['batch_size'] / len(sp['train']):.0f} passes over the
{len(sp['train'])} training digits, each time freshly augmented), label
smoothing {TRAIN['label_smoothing']}, gradient clipping {TRAIN['grad_clip']}, dropout
{cfg['hidden_dropout_prob']}. Every {TRAIN['eval_every']} steps the model was scored
on the validation split (both polarities × 8/28/64/200 px); the best checkpoint
(step {tr['best_step']}, validation accuracy {pct(tr['val_acc'])}) was kept.
Training took {tr['train_seconds'] / 60:.1f} minutes.

Validation accuracy (%) by step: {hist}.

## Held-out accuracy (test split, {len(sp['test'])} digits)

Measured through `model.onnx` (onnxruntime {ex['onnxruntime']}, CPU) with the
processor's preprocessing. Each test digit is rendered as an 8-bit picture,
inverted for dark-on-light, and upscaled with PIL bilinear to the source size
(8 px = the original 8×8), then converted to RGB.

| source size | test dark on light | test light on dark | validation dark on light | validation light on dark |
|---|---:|---:|---:|---:|
{size_rows}
| **all four sizes** | **{pct(acc['test_dark_on_light'])}** | **{pct(acc['test_light_on_dark'])}** | | |

- Overall (both polarities, all four sizes, {8 * len(sp['test'])} renderings):
  **{pct(acc['test_overall'])}**.
- Augmented test renderings (2 random training-style augmentations per test
  digit, seed {SEED + 1}): {pct(acc['test_augmented'])}.
- ONNX vs torch logits on all test renderings: max abs diff
  {info['onnx_max_abs_diff']:.2e}, same argmax everywhere: {info['onnx_same_argmax']}.

{test_images_text}

## Files

| file | bytes | sha256 |
|---|---:|---|
{file_rows}
"""


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model folder (default {DEFAULT_OUT})")
    ap.add_argument(
        "--test-images", type=Path, default=DEFAULT_TEST_IMAGES,
        help=f"folder for the 20 test PNGs (default {DEFAULT_TEST_IMAGES}); '-' to skip",
    )
    ap.add_argument("--steps", type=int, default=TRAIN["steps"], help="training steps")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime
    import sklearn
    import torch
    import transformers

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    np.random.seed(SEED)

    def log(msg):
        print(msg, flush=True)

    images, labels = load_data()
    splits = split_indices(labels)
    log(", ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    processor = make_processor()

    model, tr = train(images, labels, splits, processor, args.steps, log)
    log(f"best step {tr['best_step']}, validation {tr['val_acc']:.4f}, {tr['train_seconds']:.0f}s")

    test = eval_sets(processor, images, labels, splits["test"])
    aug_x, aug_y = augmented_set(processor, images, labels, splits["test"], SEED + 1)

    out = args.out
    with tempfile.TemporaryDirectory(prefix="tfm-vit-digits-") as tmp:
        exported = export_onnx(model, processor, Path(tmp) / "onnx")
        sess = session(exported)
        accuracy = {}
        max_diff = 0.0
        same_argmax = True
        per_pol = {"dark_on_light": [], "light_on_dark": []}
        for k, (x, y) in test.items():
            lo = ort_logits(sess, x)
            lt = torch_logits(model, x)
            max_diff = max(max_diff, float(np.abs(lo - lt).max()))
            same_argmax &= bool((lo.argmax(-1) == lt.argmax(-1)).all())
            correct = lo.argmax(-1) == y
            accuracy[f"test_{k}"] = float(correct.mean())
            per_pol[k.rsplit("_", 1)[0]].append(correct)
        for pol, c in per_pol.items():
            accuracy[f"test_{pol}"] = float(np.concatenate(c).mean())
        accuracy["test_overall"] = float(np.concatenate(per_pol["dark_on_light"] + per_pol["light_on_dark"]).mean())
        accuracy["test_augmented"] = float((ort_logits(sess, aug_x).argmax(-1) == aug_y).mean())
        accuracy["validation_best"] = tr["val_acc"]
        accuracy = {k: round(v, 4) for k, v in accuracy.items()}
        log(json.dumps(accuracy, indent=1))
        log(f"onnx vs torch: max abs diff {max_diff:.3e}, same argmax {same_argmax}")
        if max_diff > 1e-3 or not same_argmax:
            sys.exit("error: ONNX and torch disagree")

        io = graph_io(exported)
        log(json.dumps(io))
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name in SHIPPED:
            shutil.copyfile(Path(tmp) / "onnx" / name, out / name)
    sess = session(out / "model.onnx")

    # test images
    test_images_correct = None
    if str(args.test_images) != "-":
        rows = write_test_images(images, labels, splits["test"], args.test_images)
        shipped_proc = transformers.ViTImageProcessor.from_pretrained(out)
        ok = 0
        for r in rows:
            x = preprocess(shipped_proc, [load_user_image(args.test_images / r["file"])])
            lg = ort_logits(sess, x)[0]
            pred = int(lg.argmax())
            ok += pred == r["label"]
            log(f"  {r['file']:<22} {r['mode']:<5} label {r['label']} pred {pred}"
                f"{'' if pred == r['label'] else '  WRONG'}")
        test_images_correct = ok
        total = sum(p.stat().st_size for p in args.test_images.iterdir())
        log(f"test images: {ok}/20 correct, folder {total:,} bytes")

    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "optimum": md.version("optimum"),
        "optimum-onnx": md.version("optimum-onnx"),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": io["opset"],
    }
    (out / "LICENSE").write_text(LICENCE_TEXT, encoding="utf-8")
    checksums = {n: sha256(out / n) for n in SHIPPED + ["LICENSE"]}
    sizes = {n: (out / n).stat().st_size for n in checksums}
    cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    info = {
        "export": versions,
        "accuracy": accuracy,
        "train": tr,
        "splits": splits,
        "graph": io,
        "config": cfg,
        "sklearn_version": sklearn.__version__,
        "onnx_max_abs_diff": max_diff,
        "onnx_same_argmax": same_argmax,
        "test_images_correct": test_images_correct,
    }
    (out / CARD).write_text(model_card(info, checksums, sizes), encoding="utf-8")
    checksums[CARD] = sha256(out / CARD)
    manifest = {
        "name": MODEL_NAME,
        "task": "image-classification",
        "summary": "Handwritten digit classifier (0-9): a 4-layer ViT on 32x32 RGB, patch 8, "
                   "trained by tfm on scikit-learn's digits; one centred digit, either polarity, any size.",
        "source": {
            "upstream": "trained by tfm on scikit-learn load_digits",
            "package": "scikit-learn",
            "package_version": sklearn.__version__,
        },
        "licence": "Apache-2.0 (weights), CC BY 4.0 (data)",
        "weights": "fp32",
        "export": versions,
        "files": {n: checksums[n] for n in sorted(checksums)},
        "accuracy": accuracy,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for p in sorted(out.iterdir()):
        log(f"{p.name:<26} {p.stat().st_size:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
