"""A Vision Transformer's stages: images to patch tokens (patchify), and to labels (classify).

A ViT sees an image as a sequence: a 224×224 image cut into 16×16 patches is
14×14 = 196 tokens; each patch (16·16·3 values) is projected linearly to the
model width, a [CLS] token is put in front, learned position embeddings are
added, the encoder runs, and the [CLS] output is classified.  Decoding and
preprocessing run on worker threads ahead of the model, so inference never
waits on Pillow.
"""

from __future__ import annotations

import collections
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from tfm.core import fields as F
from tfm.core.engine import Engine
from tfm.core.errors import FatalError, ItemError
from tfm.core.modeldir import ModelDir
from tfm.core.stream import Record, read_records

DEFAULT_PROCESSOR = {  # a plain ViT processor for patchify without a model
    "do_resize": True, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255,
    "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}


# ------------------------------------------------------------------------------ inputs


# what a folder walk passes over on purpose: a warning, not a failed item
WALK_SKIPS = ("skipped", "outside", "loop")


def image_paths(inputs: list[str] | None, glob: str | None, recursive: bool, stdin=None) -> Iterator[tuple[str, ItemError | None]]:
    """Paths from arguments (files, folders) or, with none or `-`, from stdin (lines or records with path)."""
    for path, error in _image_paths(inputs, glob, recursive, stdin):
        if error is not None and error.kind in WALK_SKIPS:
            from tfm.core.process import warn

            warn(f"{path}: {error}")
            continue
        yield path, error


def _image_paths(inputs, glob, recursive, stdin):
    from tfm.core.images import walk

    for item in inputs or ["-"]:
        if item == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            for rec in read_records([(stream, "-")], accept_text=True):
                if rec.error is not None:
                    yield rec.where, ItemError(rec.error["message"], rec.error["kind"])
                    continue
                path = rec.fields.get("path", rec.fields.get("text"))
                if not isinstance(path, str) or not path.strip():
                    yield rec.where, ItemError("expected an image path", "missing-field")
                    continue
                yield from walk([path.strip()], glob=glob, recursive=recursive)
        else:
            yield from walk([item], glob=glob, recursive=recursive)


def decoded(paths: Iterable[tuple[str, ItemError | None]], preprocess, workers: int | None = None,
            ahead: int = 64) -> Iterator[Record]:
    """Records with their pixel_values decoded on worker threads, in input order, bounded look-ahead."""
    from tfm.core.images import open_image

    def load(path: str):
        try:
            return preprocess(open_image(path))
        except ItemError as e:
            return e
        except MemoryError:
            return ItemError("out of memory decoding the image", "too-large")

    workers = workers or min(4, os.cpu_count() or 1)
    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        index = 0
        for path, error in paths:
            index += 1
            pending.append((index, path, error if error is not None else pool.submit(load, path)))
            while len(pending) > ahead:
                yield _record(*pending.popleft())
        while pending:
            yield _record(*pending.popleft())


def _record(index: int, path: str, job) -> Record:
    result = job if isinstance(job, ItemError) else job.result()
    if isinstance(result, ItemError):
        return Record({"path": path}, path, index, error={"kind": result.kind, "message": str(result)})
    return Record({"path": path}, path, index, data=result)


def preprocessor(model: ModelDir | None, image_size: int | None):
    from tfm.core.images import Preprocessor

    if model is not None:
        if image_size is not None:
            raise FatalError("--image-size comes from the model when --model is given")
        return Preprocessor.from_model(model)
    size = image_size or 224
    return Preprocessor.from_config({**DEFAULT_PROCESSOR, "size": {"height": size, "width": size}})


# ------------------------------------------------------------------------------ patchify


def to_patches(pixels: np.ndarray, p: int) -> np.ndarray:
    """(C, H, W) -> (N, P·P·C): patches in row-major order, each flattened row by row, channels last."""
    c, h, w = pixels.shape
    rows, cols = h // p, w // p
    x = pixels.transpose(1, 2, 0)  # (H, W, C)
    x = x.reshape(rows, p, cols, p, c).transpose(0, 2, 1, 3, 4)  # (rows, cols, P, P, C)
    return np.ascontiguousarray(x.reshape(rows * cols, p * p * c))


class PatchifyStage:
    """`tfm patchify`: patch tokens, and with --project the model's own encoder input."""

    def __init__(self, model: ModelDir | None, engine: Engine | None, patch_size: int | None, project: bool):
        self.model = model
        config = model.config if model is not None else {}
        self.patch = patch_size or config.get("patch_size") or 16
        if model is not None and patch_size is not None and patch_size != config.get("patch_size"):
            raise FatalError(f"--patch-size {patch_size} differs from the model's {config.get('patch_size')}")
        self.piece = None
        if project:
            if model is None or engine is None:
                raise FatalError("--project needs --model (it applies the model's own patch projection)")
            from tfm.core.stages import Piece

            self.piece = Piece(model, engine, ["pixel_values"], ["embeddings.output"])

    def check_size(self, size: tuple[int, int]) -> None:
        h, w = size
        if h % self.patch or w % self.patch:
            raise FatalError(f"image size {h}x{w} is not a multiple of the patch size {self.patch}")

    def prepare(self, rec: Record) -> Record:
        if rec.data is None:
            raise F.missing(rec, "pixel_values")
        return rec

    def run(self, items: list[Record]) -> list[dict]:
        projected = None
        if self.piece is not None:
            batch = np.stack([r.data for r in items])
            projected = self.piece.run({"pixel_values": batch})["embeddings.output"]  # (B, N+1, D)
        out = []
        for b, rec in enumerate(items):
            c, h, w = rec.data.shape
            fields = {"path": rec.fields["path"], "image_size": [h, w], "patch_size": self.patch,
                      "grid": [h // self.patch, w // self.patch], "patches": to_patches(rec.data, self.patch)}
            if projected is not None:
                fields["hidden_states"] = np.ascontiguousarray(projected[b])
                fields["seam"] = "layers.0.input"
            out.append(fields)
        return out


# ------------------------------------------------------------------------------ classify


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class ClassifyStage:
    """`tfm classify`: top-k labels from the model's logits, or nearest class prototype with --examples."""

    def __init__(self, model: ModelDir, engine: Engine, *, top_k: int = 5, logits: bool = False,
                 taps: list[str] | None = None, examples: Path | None = None, preprocess=None):
        if top_k < 1:
            raise FatalError("--top-k must be at least 1")
        self.model, self.top_k, self.want_logits = model, top_k, logits
        path = model.onnx()
        extra: dict[str, str] = {}
        if taps:
            from tfm.core import taps as T

            extra = {name: entry["tensor"] for name, entry in T.select(path, taps).items()}
        self.taps = dict(extra)
        if examples is not None:
            from tfm.core import graph

            extra["_cls"] = graph.seams(path)["seams"]["last_hidden_state"]
        if extra:
            from tfm.core import taps as T

            blob, key = T.tapped_graph(path, sorted(set(extra.values())))
            self.session = engine.session(blob, key=f"{path}:{key}", optimize=False)
        else:
            self.session = engine.session(path)
        self.extra = extra
        outputs = [o.name for o in self.session.get_outputs()]
        if "logits" not in outputs:
            raise FatalError(f"model {model.name} has no logits output; is it an image-classification export?")
        id2label = model.config.get("id2label") or {}
        self.labels = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(len(id2label))] or None
        self.prototypes = None
        if examples is not None:
            self.class_names, self.prototypes = self._prototypes(examples, preprocess)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        names = ["logits"] + list(dict.fromkeys(self.extra.values()))
        outs = dict(zip(names, self.session.run(names, {"pixel_values": batch})))
        return outs

    def _prototypes(self, folder: Path, preprocess) -> tuple[list[str], np.ndarray]:
        from tfm.core.images import open_image

        classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")) if folder.is_dir() else []
        if not classes:
            raise FatalError(f"--examples {folder}: expected one sub-folder of images per class")
        names, protos = [], []
        for d in classes:
            vectors = []
            for path, error in image_paths([str(d)], None, True):
                if error is not None:
                    continue
                try:
                    pixels = preprocess(open_image(path))
                except ItemError:
                    continue
                cls = self.forward(pixels[None])[self.extra["_cls"]][0, 0]  # [CLS] token (D,)
                vectors.append(cls / np.linalg.norm(cls))
            if not vectors:
                raise FatalError(f"--examples: no readable image in {d}")
            mean = np.mean(vectors, axis=0)
            names.append(d.name)
            protos.append(mean / np.linalg.norm(mean))
        return names, np.stack(protos)

    def prepare(self, rec: Record) -> Record:
        if rec.data is None:
            raise F.missing(rec, "pixel_values")
        return rec

    def run(self, items: list[Record]) -> list[dict]:
        outs = self.forward(np.stack([r.data for r in items]))
        logits = outs["logits"]  # (B, L)
        results = []
        for b, rec in enumerate(items):
            fields: dict[str, Any] = {"path": rec.fields["path"]}
            if self.prototypes is not None:
                cls = outs[self.extra["_cls"]][b, 0]
                sims = self.prototypes @ (cls / np.linalg.norm(cls))
                order = np.argsort(-sims)[: self.top_k]
                fields["labels"] = [self.class_names[i] for i in order]
                fields["scores"] = [round(float(sims[i]), 6) for i in order]
            else:
                probs = softmax(logits[b].astype(np.float64))
                order = np.argsort(-probs)[: self.top_k]
                fields["labels"] = [self.labels[i] if self.labels and i < len(self.labels) else str(i) for i in order]
                fields["scores"] = [round(float(probs[i]), 6) for i in order]
            if self.want_logits:
                fields["logits"] = np.ascontiguousarray(logits[b])
            for name, tensor in self.taps.items():
                fields[name] = np.ascontiguousarray(outs[tensor][b])
            results.append(fields)
        return results


def csv_columns(top_k: int) -> list[str]:
    cols = ["path"]
    for k in range(1, top_k + 1):
        cols += [f"label_{k}", f"score_{k}"]
    return cols + ["error"]


def csv_row(fields: dict, top_k: int) -> list:
    row = [fields.get("path", "")]
    labels, scores = fields.get("labels") or [], fields.get("scores") or []
    for k in range(top_k):
        row += [labels[k] if k < len(labels) else "", scores[k] if k < len(scores) else ""]
    error = fields.get("error")
    return row + [error.get("message", "") if isinstance(error, dict) else ""]


def done_paths(output: Path, fmt: str) -> set[str]:
    """Paths already in an output file (for --resume); a cut-off last line is removed first."""
    if not output.exists():
        return set()
    data = output.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data):  # the run was killed mid-line: drop the fragment
        with open(output, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    done = set()
    if fmt == "csv":
        import csv
        import io

        for row in csv.DictReader(io.StringIO(data.decode("utf-8", "replace"))):
            if row.get("path"):
                done.add(row["path"])
        return done
    import json

    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("path"), str):
            done.add(rec["path"])
    return done
