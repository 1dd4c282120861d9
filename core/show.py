"""Rendering records for a person: rich tables on the terminal, pictures with Pillow.

Nothing here changes a record; it only looks at one.  The terminal view is a
token table, a summary of every tensor and an attention heatmap (numbers on a
colour scale); the pictures are attention maps, positional-encoding and
hidden-state heatmaps, an image's patch grid and top-k class bars.

Pictures are readable at a glance: a title naming what is drawn, labelled axes,
a colour bar with its range, and a size that adapts to the data (roughly 300 to
1600 pixels a side).  Each PNG carries its layout in text chunks
(``tfm:kind``, ``tfm:heatmap`` = the heatmap's box and grid, ``tfm:range``),
so that a program can find a cell's pixels without guessing.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import numpy as np

from tfm.core import process
from tfm.core.errors import EXIT_ITEMS_FAILED, EXIT_OK, FatalError, Interrupted, ItemError
from tfm.core.stream import Record

# Sections a record can be shown in.  Terminal-only, picture-only or both.
KINDS = ("tokens", "tensors", "attention", "posenc", "hidden", "patches", "classes")
TERMINAL_KINDS = ("tokens", "tensors", "attention", "posenc", "hidden", "patches", "classes")
PICTURE_KINDS = ("attention", "posenc", "hidden", "patches", "classes")
# What is shown when --what is not given: posenc and hidden are wide matrices
# that read better as pictures; a picture of hidden states is drawn only when
# nothing else in the record can be.
DEFAULT_TERMINAL = ("tokens", "tensors", "attention", "patches", "classes")
DEFAULT_PICTURES = ("attention", "posenc", "patches", "classes")

HIDDEN_FIELDS = ("last_hidden_state", "hidden_states", "inputs_embeds")
TAP_ATTENTION = re.compile(r"^layers\.(\d+)\.attention\.probs$")
SEAM_LAYER = re.compile(r"^layers\.(\d+)\.")


@dataclass
class Options:
    layer: int | None = None
    head: int | str = 0  # a head number or "mean"
    png: Path | None = None
    what: tuple[str, ...] | None = None  # None: all that apply
    max_tokens: int | None = None
    quiet: bool = False
    fail_fast: bool = False


def parse_head(text: str) -> int | str:
    text = text.strip().lower()
    if text in ("mean", "avg", "average"):
        return "mean"
    if text.isdigit():
        return int(text)
    raise FatalError(f"--head must be a head number (0, 1, ...) or mean, not {text!r}")


def parse_what(text: str | None) -> tuple[str, ...] | None:
    if text is None or not text.strip():
        return None
    out = []
    for word in text.split(","):
        word = word.strip().lower()
        if word == "all":
            return None
        if word not in KINDS:
            raise FatalError(f"--what: unknown section {word!r} (choose from {', '.join(KINDS)})")
        if word not in out:
            out.append(word)
    return tuple(out)


# --------------------------------------------------------------------------- reading a record


def tensors(fields: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    return [(k, v) for k, v in fields.items() if isinstance(v, np.ndarray)]


def tokens_of(fields: dict[str, Any]) -> list[str] | None:
    toks = fields.get("tokens")
    if isinstance(toks, list) and all(isinstance(t, str) for t in toks):
        return toks
    return None


def attention_layers(fields: dict[str, Any]) -> dict[int | None, str]:
    """Layer -> field holding its attention weights (None: a layer nobody named)."""
    out: dict[int | None, str] = {}
    for name, value in fields.items():
        m = TAP_ATTENTION.match(name)
        if m and isinstance(value, np.ndarray):
            out[int(m.group(1))] = name
    value = fields.get("attentions")
    if isinstance(value, np.ndarray):
        seam = fields.get("seam")
        m = SEAM_LAYER.match(seam) if isinstance(seam, str) else None
        layer = int(m.group(1)) if m else None
        out.setdefault(layer, "attentions")
    return out


@dataclass
class Attention:
    matrix: np.ndarray  # (T, T_k) float
    field: str
    layer: int | None
    head: int | str
    heads: int


def pick_attention(fields: dict[str, Any], layer: int | None, head: int | str) -> Attention:
    layers = attention_layers(fields)
    if not layers:
        raise ItemError("record has no attention weights (`attentions` from tfm attend, or "
                        "`layers.L.attention.probs` from tfm encode --tap attentions)", "missing-field")
    if layer is None:
        numbered = sorted(k for k in layers if k is not None)
        chosen = numbered[0] if numbered else None
    elif layer in layers:
        chosen = layer
    elif None in layers and all(k is None for k in layers):
        chosen = None  # plain `attentions` of an unnamed layer: the user knows which it is
    else:
        have = ", ".join(str(k) for k in sorted(k for k in layers if k is not None))
        raise ItemError(f"record has no attention weights of layer {layer} (it has layer {have})", "missing-field")
    name = layers[chosen]
    arr = np.asarray(fields[name])
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]  # (1, H, T, T) from a batch of one
    if arr.ndim == 2:
        arr = arr[None]  # one head
    if arr.ndim != 3 or arr.dtype.kind not in "fiu":
        raise ItemError(f"field {name!r} must be attention weights (H, T, T), got shape {arr.shape}", "bad-shape")
    if 0 in arr.shape:
        raise ItemError(f"field {name!r} is empty (shape {arr.shape})", "bad-shape")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ItemError(f"field {name!r} contains NaN or Inf", "non-finite")
    heads = arr.shape[0]
    if head == "mean":
        matrix = arr.mean(axis=0)
    else:
        if not 0 <= int(head) < heads:
            raise ItemError(f"--head {head} is out of range: {name!r} has {heads} heads (0..{heads - 1})", "bad-value")
        matrix = arr[int(head)]
    return Attention(matrix, name, chosen, head, heads)


def matrix_field(fields: dict[str, Any], kind: str) -> tuple[str, np.ndarray] | None:
    names = ("position_encoding",) if kind == "posenc" else HIDDEN_FIELDS
    for name in names:
        value = fields.get(name)
        if isinstance(value, np.ndarray) and value.ndim in (2, 3) and value.dtype.kind in "fiu":
            value = value[0] if value.ndim == 3 and value.shape[0] == 1 else value
            if value.ndim == 2 and value.size:
                if not np.isfinite(value).all():
                    raise ItemError(f"field {name!r} contains NaN or Inf", "non-finite")
                return name, value.astype(np.float64)
    return None


def classes_of(fields: dict[str, Any]) -> tuple[list[str], np.ndarray] | None:
    labels, scores = fields.get("labels"), fields.get("scores")
    if not isinstance(labels, list) or scores is None:
        return None
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(labels) != len(scores) or not labels:
        raise ItemError(f"record has {len(labels)} labels but {len(scores)} scores", "bad-shape")
    if not np.isfinite(scores).all():
        raise ItemError("field 'scores' contains NaN or Inf", "non-finite")
    return [str(x) for x in labels], scores


@dataclass
class PatchImage:
    pixels: np.ndarray  # (rows*P, cols*P, C) in [0, 1]
    rows: int
    cols: int
    patch: int
    channels: int
    source: str


def patch_image(fields: dict[str, Any]) -> PatchImage | None:
    """The image as the model sees it, rebuilt from `patches` (or `pixel_values`)."""
    patches, grid, size = fields.get("patches"), fields.get("grid"), fields.get("patch_size")
    pixel_values = fields.get("pixel_values")
    if patches is None and pixel_values is None:
        return None
    if isinstance(size, (list, tuple, np.ndarray)):
        size = int(np.asarray(size).reshape(-1)[0])
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ItemError("record has patches but no valid `patch_size` (made by tfm patchify)", "missing-field")
    p = int(size)
    if isinstance(patches, np.ndarray):
        if grid is None or np.asarray(grid).size != 2:
            raise ItemError("record has patches but no `grid` [rows, cols] (made by tfm patchify)", "missing-field")
        rows, cols = (int(x) for x in np.asarray(grid).reshape(-1))
        arr = patches[0] if patches.ndim == 3 and patches.shape[0] == 1 else patches
        if arr.ndim != 2 or arr.shape[1] % (p * p) or arr.shape[0] != rows * cols:
            raise ItemError(f"`patches` of shape {patches.shape} does not fit a {rows}x{cols} grid of "
                            f"{p}x{p} patches", "bad-shape")
        c = arr.shape[1] // (p * p)
        # each patch is flattened (P, P, C): row by row, channels last
        img = arr.reshape(rows, cols, p, p, c).transpose(0, 2, 1, 3, 4).reshape(rows * p, cols * p, c)
        source = "patches"
    else:
        arr = np.asarray(pixel_values)
        arr = arr[0] if arr.ndim == 4 and arr.shape[0] == 1 else arr
        if arr.ndim != 3:
            raise ItemError(f"`pixel_values` must be (C, H, W), got {arr.shape}", "bad-shape")
        img = arr.transpose(1, 2, 0)
        c = img.shape[2]
        rows, cols = img.shape[0] // p, img.shape[1] // p
        img = img[: rows * p, : cols * p]
        source = "pixel_values"
    if c not in (1, 3, 4):
        raise ItemError(f"cannot draw an image of {c} channels", "bad-shape")
    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        raise ItemError(f"`{source}` contains NaN or Inf", "non-finite")
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)  # undo the normalisation's offset and scale
    return PatchImage(img[..., :3] if c == 4 else img, rows, cols, p, c, source)


def applicable(fields: dict[str, Any], kind: str) -> bool:
    if kind == "tokens":
        return tokens_of(fields) is not None or isinstance(fields.get("input_ids"), np.ndarray)
    if kind == "tensors":
        return bool(tensors(fields))
    if kind == "attention":
        return bool(attention_layers(fields))
    if kind in ("posenc", "hidden"):
        return matrix_field(fields, kind) is not None
    if kind == "patches":
        return "patches" in fields or ("pixel_values" in fields and "patch_size" in fields)
    if kind == "classes":
        return isinstance(fields.get("labels"), list) and "scores" in fields
    return False


def shorten(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"


def head_words(att: Attention) -> str:
    if att.head == "mean":
        return f"mean of {att.heads} heads"
    return f"head {att.head} of {att.heads}"


# --------------------------------------------------------------------------- colour maps

# viridis (matplotlib, CC0) at 9 evenly spaced points, and ColorBrewer RdBu
# reversed (blue for negative, red for positive); both are interpolated linearly.
_VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21908c", "#27ad81", "#5dc863", "#aadc32", "#fde725"]
_RDBU = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
         "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"]


@lru_cache(maxsize=None)
def colormap(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table."""
    anchors = {"viridis": _VIRIDIS, "diverging": _RDBU}[name]
    rgb = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in anchors], dtype=np.float64)
    at = np.linspace(0, 1, len(anchors))
    x = np.linspace(0, 1, 256)
    lut = np.stack([np.interp(x, at, rgb[:, k]) for k in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


def to_index(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Values -> 0..255 along the colour map."""
    if vmax <= vmin:
        return np.zeros(values.shape, dtype=np.int64)
    t = (np.asarray(values, dtype=np.float64) - vmin) / (vmax - vmin)
    return np.clip(np.round(np.nan_to_num(t, nan=0.0) * 255), 0, 255).astype(np.int64)


def colorize(values: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    return colormap(cmap)[to_index(values, vmin, vmax)]


def attention_range(m: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    lo = 0.0 if lo >= 0 else lo  # weights: the scale starts at 0
    return lo, (hi if hi > lo else lo + 1.0)


def symmetric_range(m: np.ndarray) -> tuple[float, float]:
    r = float(np.nanmax(np.abs(m))) if m.size else 1.0
    r = r if r > 0 else 1.0
    return -r, r


def robust_range(m: np.ndarray) -> tuple[float, float, bool]:
    """A symmetric scale; a few outliers (learned embeddings have them) are clipped so the rest shows."""
    lo, hi = symmetric_range(m)
    if m.size < 50:
        return lo, hi, False
    r = float(np.quantile(np.abs(m), 0.995))
    if 0 < r < 0.5 * hi:
        return -r, r, True
    return lo, hi, False


def luminance(rgb) -> float:
    r, g, b = (c / 255 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# --------------------------------------------------------------------------- numbers


def fmt_num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e5:
        return f"{v:.4g}"
    return f"{v:.2e}"


def fmt_weight(v: float) -> str:
    """A weight in [0, 1] in three characters: .42, 1.0, · for ~0."""
    if v < 0.005:
        return " · "
    if v >= 0.995:
        return "1.0"
    return f"{v:.2f}"[1:]


def fmt_cell(v: float) -> str:
    """Any value in four or five characters."""
    a = abs(v)
    if a >= 9.995:
        return f"{v:.0f}"
    s = f"{v:.2f}"
    return s.replace("0.", ".", 1) if a < 1 else s


def fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if 0.01 <= a < 1e4:
        return f"{v:.3g}"
    return f"{v:.2g}"


def tensor_stats(arr: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"shape": tuple(arr.shape), "dtype": str(arr.dtype), "nan": 0, "inf": 0}
    if arr.size == 0 or arr.dtype.kind not in "biufc":
        return {**out, "mean": None, "std": None, "min": None, "max": None}
    a = arr.real if arr.dtype.kind == "c" else arr
    if a.dtype.kind == "f":
        out["nan"] = int(np.isnan(a).sum())
        out["inf"] = int(np.isinf(a).sum())
        finite = a[np.isfinite(a)]
    else:
        finite = a.reshape(-1)
    if finite.size == 0:
        return {**out, "mean": None, "std": None, "min": None, "max": None}
    f = finite.astype(np.float64)
    return {**out, "mean": float(f.mean()), "std": float(f.std()), "min": float(f.min()), "max": float(f.max())}


# --------------------------------------------------------------------------- terminal


def use_color(stream=None) -> bool:
    """Colour only for a terminal, and never under NO_COLOR or TERM=dumb (FORCE_COLOR forces it)."""
    if os.environ.get("NO_COLOR", "") != "":
        return False
    if os.environ.get("TERM", "") == "dumb":
        return False
    if os.environ.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((100, 24)).columns)


class TerminalView:
    """Renders one record at a time into a string; colour only when asked for."""

    def __init__(self, color: bool, width: int, options: Options):
        self.color = color
        self.width = width
        self.options = options

    def _console(self, buf: io.StringIO):
        from rich.console import Console

        return Console(file=buf, width=self.width, force_terminal=self.color, no_color=not self.color,
                       color_system=self._color_system() if self.color else None, highlight=False,
                       emoji=False, markup=False, legacy_windows=False, soft_wrap=False,
                       force_jupyter=False, force_interactive=False)

    @staticmethod
    def _color_system() -> str:
        if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
            return "truecolor"
        return "256"

    def render(self, rec: Record, sections: list[str]) -> tuple[str, list[ItemError]]:
        """The record's text, and the errors of sections that could not be shown."""
        from rich.text import Text

        buf = io.StringIO()
        con = self._console(buf)
        fields = rec.fields
        con.print(Text(self._heading(rec), style="bold"))
        if rec.error is not None:
            err = rec.error
            con.print(Text(f"  error ({err.get('kind', 'error')}): {err.get('message', '')}", style="bold red"))
            con.print()
            return buf.getvalue(), []
        for label, key in (("text", "text"), ("path", "path"), ("seam", "seam")):
            value = fields.get(key)
            if isinstance(value, str):
                con.print(Text.assemble((f"  {label}: ", "dim"), shorten(value, 4 * self.width)))
        errors: list[ItemError] = []
        for kind in sections:
            con.print()
            try:
                getattr(self, f"_{kind}")(con, fields)
            except ItemError as e:
                errors.append(e)
        con.print()
        return buf.getvalue(), errors

    def _heading(self, rec: Record) -> str:
        where = f" · {rec.where}" if rec.where and rec.where != f"record {rec.index}" else ""
        return f"── record {rec.index}{where} " + "─" * max(0, min(self.width, 100) - 14 - len(where))

    def _table(self, title: str, **kw):
        from rich import box
        from rich.table import Table

        return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                     header_style="bold", pad_edge=False, show_edge=False, padding=(0, 1, 0, 0), **kw)

    # sections ----------------------------------------------------------------

    def _tokens(self, con, fields) -> None:
        toks = tokens_of(fields)
        ids = fields.get("input_ids")
        ids = ids.reshape(-1) if isinstance(ids, np.ndarray) else None
        n = len(toks) if toks is not None else (len(ids) if ids is not None else 0)
        if n == 0 and toks is None and ids is None:
            raise ItemError("record has no tokens (made by tfm tokenize)", "missing-field")
        offsets = fields.get("offsets")
        special = fields.get("special_tokens_mask")
        mask = fields.get("attention_mask")
        table = self._table(f"Tokens ({n})")
        table.add_column("#", justify="right", style="dim")
        table.add_column("token")
        table.add_column("id", justify="right")
        has_off = isinstance(offsets, np.ndarray) and offsets.ndim == 2 and len(offsets) == n
        has_special = isinstance(special, np.ndarray) and special.reshape(-1).shape[0] == n
        has_mask = isinstance(mask, np.ndarray) and mask.reshape(-1).shape[0] == n and not bool(np.all(mask == 1))
        if has_off:
            table.add_column("offsets", justify="right")
        if has_special:
            table.add_column("special", justify="center")
        if has_mask:
            table.add_column("mask", justify="center")
        text = fields.get("text") if isinstance(fields.get("text"), str) else None
        if has_off and text is not None:
            table.add_column("text", style="dim")
        for i in range(n):
            tok = toks[i] if toks is not None and i < len(toks) else ""
            row = [str(i), repr(tok)[1:-1] if tok.strip() != tok or not tok.isprintable() else tok,
                   str(int(ids[i])) if ids is not None and i < len(ids) else ""]
            if has_off:
                a, b = int(offsets[i][0]), int(offsets[i][1])
                row.append(f"{a}–{b}")
            if has_special:
                row.append("✓" if int(special.reshape(-1)[i]) else "")
            if has_mask:
                row.append(str(int(mask.reshape(-1)[i])))
            if has_off and text is not None:
                a, b = int(offsets[i][0]), int(offsets[i][1])
                row.append(text[a:b] if 0 <= a < b <= len(text) else "")
            table.add_row(*row, style="dim" if has_special and int(special.reshape(-1)[i]) else None)
        con.print(table)

    def _tensors(self, con, fields) -> None:
        items = tensors(fields)
        if not items:
            raise ItemError("record has no tensors", "missing-field")
        table = self._table(f"Tensors ({len(items)})")
        longest = min(40, max(len(name) for name, _ in items))
        for name, just in (("field", "left"), ("shape", "left"), ("dtype", "left"), ("mean", "right"),
                           ("std", "right"), ("min", "right"), ("max", "right"), ("nan", "right"),
                           ("inf", "right")):
            table.add_column(name, justify=just, no_wrap=name != "field", overflow="fold",
                             min_width=longest if name == "field" else None)
        for name, arr in items:
            s = tensor_stats(arr)
            nums = ["–" if s[k] is None else fmt_num(s[k]) for k in ("mean", "std", "min", "max")]
            shape = "(" + ", ".join(str(d) for d in s["shape"]) + ("," if len(s["shape"]) == 1 else "") + ")"
            bad = s["nan"] or s["inf"]
            table.add_row(name, shape, s["dtype"], *nums, str(s["nan"]), str(s["inf"]),
                          style="red" if bad else None)
        con.print(table)

    def _attention(self, con, fields) -> None:
        att = pick_attention(fields, self.options.layer, self.options.head)
        toks = tokens_of(fields)
        t, tk = att.matrix.shape
        where = f"layer {att.layer} · " if att.layer is not None else ""
        title = f"Attention · {where}{head_words(att)} · {att.field} · rows attend to columns"
        vmin, vmax = attention_range(att.matrix)
        weights = vmin >= 0 and vmax <= 1.0 + 1e-6
        self._heatmap(con, title, att.matrix, labels(toks, t, fields), labels(toks, tk, fields), "viridis",
                      (0.0, max(vmax, 1e-9)) if weights else (vmin, vmax), fmt_weight if weights else fmt_cell)

    def _matrix(self, con, fields, kind: str) -> None:
        found = matrix_field(fields, kind)
        if found is None:
            what = "position_encoding (made by tfm posenc --only)" if kind == "posenc" else \
                "hidden states (" + ", ".join(HIDDEN_FIELDS) + ")"
            raise ItemError(f"record has no {what}", "missing-field")
        name, m = found
        toks = tokens_of(fields)
        title = f"{name} ({m.shape[0]} × {m.shape[1]}) · rows are positions, columns dimensions"
        self._heatmap(con, title, m, labels(toks, m.shape[0], fields), [str(j) for j in range(m.shape[1])],
                      "diverging", symmetric_range(m), fmt_cell)

    def _posenc(self, con, fields) -> None:
        self._matrix(con, fields, "posenc")

    def _hidden(self, con, fields) -> None:
        self._matrix(con, fields, "hidden")

    def _heatmap(self, con, title, m, row_labels, col_labels, cmap, rng, fmt) -> None:
        from rich.table import Table
        from rich.text import Text

        rows, cols = m.shape
        cell = max(len(fmt(float(v))) for v in (m.min(), m.max(), -abs(m).max() if cmap == "diverging" else 0.0))
        row_w = min(16, max(len(s) for s in row_labels)) if row_labels else 2
        fit = max(1, (self.width - row_w - 2) // (cell + 1))
        limit = self.options.max_tokens
        n_rows = min(rows, limit) if limit else rows
        n_cols = min(cols, limit or fit, fit)
        con.print(Text(title, style="bold"))
        table = Table(box=None, show_header=True,
                      padding=(0, 1, 0, 0), pad_edge=False, show_edge=False, header_style="")
        table.add_column("", justify="right", no_wrap=True, max_width=row_w)
        upright = all(len(s) <= cell for s in col_labels[:n_cols]) and \
            all(s == str(j) for j, s in enumerate(col_labels[:n_cols]))
        col_h = min(8, max((len(s) for s in col_labels[:n_cols]), default=1))
        for j in range(n_cols):
            head = col_labels[j] if upright else vertical(col_labels[j], col_h)
            table.add_column(Text(head, style="bold"), justify="right", no_wrap=True, width=cell,
                             vertical="bottom")
        lut = colormap(cmap)
        idx = to_index(m[:n_rows, :n_cols], *rng)
        for i in range(n_rows):
            cells = [Text(shorten(row_labels[i], row_w), style="bold")]
            for j in range(n_cols):
                v = float(m[i, j])
                if self.color:
                    rgb = lut[idx[i, j]]
                    fg = "black" if luminance(rgb) > 0.45 else "white"
                    cells.append(Text(fmt(v).rjust(cell), style=f"{fg} on rgb({rgb[0]},{rgb[1]},{rgb[2]})"))
                else:
                    cells.append(Text(fmt(v).rjust(cell)))
            table.add_row(*cells)
        con.print(table)
        notes = []
        if n_rows < rows or n_cols < cols:
            notes.append(f"showing {n_rows} of {rows} rows and {n_cols} of {cols} columns"
                         + (" (--max-tokens)" if limit else " (the terminal's width; see --max-tokens)"))
        notes.append(f"scale {fmt_tick(rng[0])} … {fmt_tick(rng[1])}"
                     + (", darkest to brightest" if self.color and cmap == "viridis" else
                        ", blue below zero, red above" if self.color else ""))
        con.print(Text("  " + "; ".join(notes), style="dim"))

    def _patches(self, con, fields) -> None:
        from rich.text import Text

        pi = patch_image(fields)
        if pi is None:
            raise ItemError("record has no patches (made by tfm patchify)", "missing-field")
        n = pi.rows * pi.cols
        con.print(Text("Patches", style="bold"))
        con.print(f"  {pi.rows} × {pi.cols} grid = {n} patches of {pi.patch} × {pi.patch} px, {pi.channels} "
                  f"channel{'s' if pi.channels != 1 else ''}, a {pi.cols * pi.patch} × {pi.rows * pi.patch} px "
                  f"image (from `{pi.source}`); patch indices:")
        if pi.rows <= 24 and pi.cols * 4 + 6 <= self.width:
            w = len(str(n - 1))
            for r in range(pi.rows):
                con.print(Text("  " + " ".join(str(r * pi.cols + c).rjust(w) for c in range(pi.cols)), style="dim"))

    def _classes(self, con, fields) -> None:
        from rich.text import Text

        found = classes_of(fields)
        if found is None:
            raise ItemError("record has no `labels` and `scores` (made by tfm classify)", "missing-field")
        names, scores = found
        table = self._table(f"Top {len(names)} classes")
        table.add_column("#", justify="right", style="dim")
        table.add_column("label", overflow="fold")
        table.add_column("score", justify="right")
        bar_w = max(10, min(40, self.width - 40))
        table.add_column("", no_wrap=True)
        top = max(1.0, float(scores.max())) if scores.min() >= 0 else float(np.abs(scores).max() or 1)
        for i, (name, s) in enumerate(zip(names, scores)):
            table.add_row(str(i + 1), name, f"{s:.4f}" if abs(s) < 10 else f"{s:.4g}",
                          Text(bar(max(0.0, s) / top, bar_w), style="cyan" if self.color else ""))
        con.print(table)


def labels(tokens: list[str] | None, n: int, fields: dict[str, Any] | None = None) -> list[str]:
    """Names of a sequence's positions: its tokens, else [CLS] and patch numbers of an image, else indices."""
    if tokens is not None and len(tokens) == n:
        return [t if t.strip() else repr(t) for t in tokens]
    grid = fields.get("grid") if fields is not None else None
    if grid is not None and np.asarray(grid).size == 2:
        patches = int(np.prod(np.asarray(grid)))
        if n == patches + 1:  # a ViT sequence: [CLS] then the patches in row-major order
            return ["[CLS]"] + [f"p{i}" for i in range(patches)]
        if n == patches:
            return [f"p{i}" for i in range(patches)]
    return [str(i) for i in range(n)]


def vertical(text: str, height: int) -> str:
    """A column header written downwards, one character a line, bottom-aligned."""
    chars = list(shorten(text, height)) or [" "]
    return "\n".join([" "] * (height - len(chars)) + chars)


def bar(fraction: float, width: int) -> str:
    eighths = int(round(max(0.0, min(1.0, fraction)) * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("" if rest == 0 else "▏▎▍▌▋▊▉"[rest - 1])


# --------------------------------------------------------------------------- pictures

INK = (34, 34, 34)
MUTED = (120, 120, 120)
FRAME = (160, 160, 160)
PAPER = (255, 255, 255)
MARGIN = 24


@lru_cache(maxsize=None)
def font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def text_w(text: str, size: int) -> int:
    f = font(size)
    return int(math.ceil(f.getlength(text))) if hasattr(f, "getlength") else len(text) * 6


def text_h(size: int) -> int:
    box = font(size).getbbox("Ag[")
    return box[3] - min(box[1], 0)


@dataclass
class Picture:
    image: Any  # PIL.Image.Image
    kind: str
    meta: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", "tfm show")
        info.add_text("tfm:kind", self.kind)
        for key, value in self.meta.items():
            info.add_text(f"tfm:{key}", value if isinstance(value, str) else json.dumps(value))
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        process.state.in_write = True  # Ctrl-C waits for the file to be whole
        try:
            self.image.save(tmp, format="PNG", pnginfo=info, optimize=False)
            os.replace(tmp, path)  # a picture is whole or absent, never half written
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise FatalError(f"cannot write {path}: {e.strerror or e}") from None
        finally:
            process.state.in_write = False
        if process.state.pending_signal is not None:
            signum, process.state.pending_signal = process.state.pending_signal, None
            raise Interrupted(signum)


def _canvas(width: int, height: int):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (int(width), int(height)), PAPER)
    return img, ImageDraw.Draw(img)


def _label_strip(items: list[tuple[str, str, bool] | None], cell: int, size: int, near: str):
    """Labels one per cell, stacked downwards; ``near`` is the side that touches the heatmap.

    Each item is (index, token, muted); the index sits next to the heatmap (a
    label that is only an index is drawn as the token).  Returns an image and
    the padding above the first cell: labels of tiny cells overhang the ends.
    """
    small = max(8, size - 2)
    shown = [it for it in items if it is not None]
    idx_w = max((text_w(it[0], small) for it in shown if it[1]), default=0)
    tok_w = max((text_w(it[1] or it[0], size) for it in shown), default=0)
    gap = 6 if idx_w else 0
    width = idx_w + gap + tok_w + 4
    h = text_h(size)
    pad = max(0, (h - cell) // 2 + 1)
    img, draw = _canvas(max(1, width), max(1, len(items) * cell + 2 * pad))
    for k, it in enumerate(items):
        if it is None:
            continue
        index, token, muted = it
        y = pad + k * cell + (cell - h) // 2
        ink = MUTED if muted else INK
        if not token:  # the index is the label
            token, index = index, ""
        iw, tw = text_w(index, small), text_w(token, size)
        if near == "right":
            if index:
                draw.text((width - 4 - iw, y + 1), index, font=font(small), fill=MUTED)
            draw.text((width - 4 - idx_w - gap - tw, y), token, font=font(size), fill=ink)
        else:
            if index:
                draw.text((4, y + 1), index, font=font(small), fill=MUTED)
            draw.text((4 + idx_w + gap, y), token, font=font(size), fill=ink)
    return img, pad


def _step(cell: int, size: int) -> int:
    """Label every k-th row so that labels never overlap."""
    return max(1, math.ceil((text_h(size) + 2) / max(cell, 1)))


def _nice_step(n: int, target: int) -> int:
    raw = max(1, n / max(target, 1))
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return int(m * mag)
    return int(10 * mag)


def _vertical_text(text: str, size: int, fill=INK):
    """Text rotated to read bottom-to-top, on a white image."""
    from PIL import Image

    img, draw = _canvas(text_w(text, size) + 2, text_h(size) + 2)
    draw.text((1, 0), text, font=font(size), fill=fill)
    return img.transpose(Image.Transpose.ROTATE_90)


def _colorbar(img, draw, x: int, y: int, height: int, cmap: str, vmin: float, vmax: float,
              ticks: list[float], size: int = 12, clipped: bool = False) -> None:
    from PIL import Image

    width = 16
    grad = np.linspace(1, 0, max(height, 2))[:, None].repeat(width, axis=1)  # top is the maximum
    img.paste(Image.fromarray(colormap(cmap)[to_index(grad, 0, 1)]), (x, y))
    draw.rectangle([x - 1, y - 1, x + width, y + height], outline=FRAME)
    h = text_h(size)
    for v in ticks:
        t = 0.0 if vmax == vmin else (v - vmin) / (vmax - vmin)
        ty = int(round(y + (1 - t) * (height - 1)))
        draw.line([x + width, ty, x + width + 4, ty], fill=INK)
        label = tick_label(v, vmin, vmax, clipped)
        draw.text((x + width + 7, min(max(ty - h // 2, y - h // 2), y + height - h // 2)), label,
                  font=font(size), fill=INK)


def tick_label(v: float, vmin: float, vmax: float, clipped: bool) -> str:
    if clipped and v == vmax:
        return f">{fmt_tick(v)}"
    if clipped and v == vmin:
        return f"<{fmt_tick(v)}"
    return fmt_tick(v)


def colorbar_width(ticks: list[float], size: int = 12, clipped: bool = False) -> int:
    return 16 + 8 + max(text_w(tick_label(v, ticks[0], ticks[-1], clipped), size) for v in ticks) + 4


def _title(draw, x: int, y: int, title: str, subtitle: str | None, max_w: int) -> int:
    """Draw the title lines; returns the y below them."""
    draw.text((x, y), fit_text(title, 18, max_w), font=font(18), fill=INK)
    y += text_h(18) + 6
    if subtitle:
        draw.text((x, y), fit_text(subtitle, 13, max_w), font=font(13), fill=MUTED)
        y += text_h(13) + 4
    return y + 10


def fit_text(text: str, size: int, max_w: int) -> str:
    text = " ".join(text.split())
    if text_w(text, size) <= max_w:
        return text
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_w(text[:mid] + "…", size) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def _items(names: list[str], step: int, muted: list[bool] | None = None, max_chars: int = 18):
    out: list[tuple[str, str, bool] | None] = []
    for i, name in enumerate(names):
        if i % step:
            out.append(None)
        else:
            token = "" if name == str(i) else shorten(name, max_chars)
            out.append((str(i), token, bool(muted[i]) if muted else False))
    return out


def draw_attention(matrix: np.ndarray, row_names: list[str], col_names: list[str], *, title: str,
                   subtitle: str | None = None, row_muted: list[bool] | None = None,
                   col_muted: list[bool] | None = None) -> Picture:
    """A (T, T_k) weight matrix as a heatmap: queries down the left, keys along the top."""
    from PIL import ImageDraw

    rows, cols = matrix.shape
    cell = int(max(1, min(56, 720 // max(rows, cols, 1))))
    size = int(max(9, min(14, cell * 0.6)))
    row_strip, row_pad = _label_strip(_items(row_names, _step(cell, size), row_muted), cell, size, "right")
    from PIL import Image

    if all(name == str(j) for j, name in enumerate(col_names)):  # bare indices: upright, if they fit
        step = max(1, math.ceil((text_w(str(len(col_names) - 1), size) + 6) / cell))
        col_strip, _ = _canvas(len(col_names) * cell + 2 * cell * step, text_h(size) + 4)
        col_pad = cell * step
        strip_draw = ImageDraw.Draw(col_strip)
        for j in range(0, len(col_names), step):
            label = col_names[j]
            strip_draw.text((col_pad + j * cell + (cell - text_w(label, size)) // 2, 0), label, font=font(size),
                            fill=INK)
    else:
        col_strip, col_pad = _label_strip(_items(col_names, _step(cell, size), col_muted), cell, size, "left")
        col_strip = col_strip.transpose(Image.Transpose.ROTATE_90)  # reads upwards from the heatmap
    vmin, vmax = attention_range(matrix)
    ticks = [vmin, (vmin + vmax) / 2, vmax]
    axis = 13
    left_axis = text_h(axis) + 8
    hm_w, hm_h = cols * cell, rows * cell
    x0 = MARGIN + left_axis + row_strip.width
    cb_x = x0 + hm_w + 18
    width = cb_x + colorbar_width(ticks) + MARGIN
    title_w = max(text_w(title, 18), text_w(subtitle or "", 13))
    width = max(width, min(title_w, 1100) + 2 * MARGIN, 320)
    # the title, the key axis title, then the rotated key labels
    y_title_end = MARGIN + text_h(18) + 6 + (text_h(13) + 4 if subtitle else 0) + 10
    y_keys = y_title_end
    y0 = y_keys + text_h(axis) + 6 + col_strip.height
    height = max(y0 + max(hm_h, 160) + MARGIN, 320)
    img, draw = _canvas(width, height)
    _title(draw, MARGIN, MARGIN, title, subtitle, width - 2 * MARGIN)
    # heatmap: one colour per cell, no gaps, so that a cell's pixels are all its value's colour
    rgb = colorize(matrix, "viridis", vmin, vmax)
    heat = Image.fromarray(rgb.astype(np.uint8)).resize((hm_w, hm_h), Image.Resampling.NEAREST)
    img.paste(row_strip, (x0 - row_strip.width - 1, y0 - row_pad))
    img.paste(col_strip, (x0 - col_pad, y0 - col_strip.height - 2))
    img.paste(heat, (x0, y0))
    draw.rectangle([x0 - 1, y0 - 1, x0 + hm_w, y0 + hm_h], outline=FRAME)
    # axis titles
    draw.text((x0, y_keys), "keys (attended to)", font=font(axis), fill=MUTED)
    q = _vertical_text("queries (attending)", axis, MUTED)
    img.paste(q, (MARGIN, y0 + max(0, (hm_h - q.height) // 2)))
    if cell >= 34 and rows * cols <= 900:  # the numbers themselves, when there is room
        vs = int(max(9, min(13, cell * 0.28)))
        lut = colormap("viridis")
        idx = to_index(matrix, vmin, vmax)
        for i in range(rows):
            for j in range(cols):
                v = float(matrix[i, j])
                s = fmt_weight(v).strip() if vmin >= 0 and vmax <= 1 else fmt_cell(v)
                c = lut[idx[i, j]]
                ink = (0, 0, 0) if luminance(c) > 0.45 else (255, 255, 255)
                tw = text_w(s, vs)
                draw.text((x0 + j * cell + (cell - tw) // 2, y0 + i * cell + (cell - text_h(vs)) // 2), s,
                          font=font(vs), fill=ink)
    cb_h = max(hm_h, 160)
    _colorbar(img, draw, cb_x, y0, cb_h, "viridis", vmin, vmax, ticks)
    meta = {"heatmap": {"x": x0, "y": y0, "cell_w": cell, "cell_h": cell, "rows": rows, "cols": cols},
            "range": [vmin, vmax], "colormap": "viridis"}
    return Picture(img, "attention", meta)


def draw_matrix(matrix: np.ndarray, row_names: list[str], *, title: str, subtitle: str | None = None,
                kind: str = "posenc", row_muted: list[bool] | None = None) -> Picture:
    """A (T, D) matrix: positions down the left, dimensions along the bottom, diverging colours."""
    from PIL import Image

    rows, cols = matrix.shape
    cw = int(max(1, min(24, 900 // max(cols, 1))))
    ch = int(max(1, min(40, 560 // max(rows, 1))))
    size = int(max(9, min(13, ch * 0.6)))
    row_strip, row_pad = _label_strip(_items(row_names, _step(ch, size), row_muted), ch, size, "right")
    vmin, vmax, clipped = robust_range(matrix)
    ticks = [vmin, vmin / 2, 0.0, vmax / 2, vmax]
    if clipped:
        top = float(np.abs(matrix).max())
        note = f"colours clipped at ±{fmt_tick(vmax)} (99.5% of |values|; the largest is {fmt_tick(top)})"
        subtitle = f"{subtitle} · {note}" if subtitle else note
    axis = 13
    left_axis = text_h(axis) + 8
    hm_w, hm_h = cols * cw, rows * ch
    x0 = MARGIN + left_axis + row_strip.width
    cb_x = x0 + hm_w + 18
    width = cb_x + colorbar_width(ticks, clipped=clipped) + MARGIN
    title_w = max(text_w(title, 18), text_w(subtitle or "", 13))
    width = max(width, min(title_w, 1100) + 2 * MARGIN, 320)
    y0 = MARGIN + text_h(18) + 6 + (text_h(13) + 4 if subtitle else 0) + 10
    tick_size = 11
    height = max(y0 + max(hm_h, 160) + 8 + text_h(tick_size) + 8 + text_h(axis) + MARGIN, 300)
    img, draw = _canvas(width, height)
    _title(draw, MARGIN, MARGIN, title, subtitle, width - 2 * MARGIN)
    heat = Image.fromarray(colorize(matrix, "diverging", vmin, vmax)).resize((hm_w, hm_h), Image.Resampling.NEAREST)
    img.paste(row_strip, (x0 - row_strip.width - 1, y0 - row_pad))
    img.paste(heat, (x0, y0))
    draw.rectangle([x0 - 1, y0 - 1, x0 + hm_w, y0 + hm_h], outline=FRAME)
    # dimension ticks along the bottom, at round numbers
    step = _nice_step(cols, max(2, hm_w // 70))
    ty = y0 + hm_h + 2
    for j in range(0, cols, step):
        tx = x0 + j * cw + cw // 2
        draw.line([tx, ty, tx, ty + 4], fill=INK)
        s = str(j)
        draw.text((tx - text_w(s, tick_size) // 2, ty + 6), s, font=font(tick_size), fill=INK)
    label = "dimension"
    draw.text((x0 + (hm_w - text_w(label, axis)) // 2, ty + 8 + text_h(tick_size) + 4), label,
              font=font(axis), fill=MUTED)
    q = _vertical_text("position", axis, MUTED)
    img.paste(q, (MARGIN, y0 + max(0, (hm_h - q.height) // 2)))
    _colorbar(img, draw, cb_x, y0, max(hm_h, 160), "diverging", vmin, vmax, ticks, clipped=clipped)
    meta = {"heatmap": {"x": x0, "y": y0, "cell_w": cw, "cell_h": ch, "rows": rows, "cols": cols},
            "range": [vmin, vmax], "colormap": "diverging"}
    return Picture(img, kind, meta)


def draw_patches(pi: PatchImage, *, title: str, subtitle: str | None = None) -> Picture:
    """The image cut into its patches, a small gap between them, each with its index."""
    from PIL import Image, ImageDraw

    p, rows, cols = pi.patch, pi.rows, pi.cols
    side = max(rows, cols) * p
    # whole-pixel enlargement for small images (crisp pixels), shrink only for huge ones
    scale = max(1, math.ceil(480 / side)) if side < 480 else min(1.0, 1100 / side)
    pd = max(4, int(round(p * scale)))
    gap = 2 if pd >= 12 else 1
    grid_w, grid_h = cols * pd + (cols - 1) * gap, rows * pd + (rows - 1) * gap
    axis_size = 11
    lab_w = text_w(str(rows - 1), axis_size) + 8
    lab_h = text_h(axis_size) + 6
    x0 = MARGIN + lab_w
    y_top = MARGIN + text_h(18) + 6 + (text_h(13) + 4 if subtitle else 0) + 10
    y0 = y_top + lab_h
    width = max(x0 + grid_w + MARGIN, min(max(text_w(title, 18), text_w(subtitle or "", 13)), 1100) + 2 * MARGIN, 320)
    height = max(y0 + grid_h + MARGIN, 300)
    img, draw = _canvas(width, height)
    _title(draw, MARGIN, MARGIN, title, subtitle, width - 2 * MARGIN)
    pix = np.round(pi.pixels * 255).astype(np.uint8)
    if pix.shape[2] == 1:
        pix = pix.repeat(3, axis=2)
    resample = Image.Resampling.NEAREST if pd >= p else Image.Resampling.LANCZOS
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    odraw = ImageDraw.Draw(overlay)
    n_size = int(max(8, min(14, pd * 0.3)))
    label_every = 1 if text_w(str(rows * cols - 1), n_size) + 4 <= pd else 0
    for r in range(rows):
        for c in range(cols):
            tile = Image.fromarray(pix[r * p:(r + 1) * p, c * p:(c + 1) * p]).resize((pd, pd), resample)
            x, y = x0 + c * (pd + gap), y0 + r * (pd + gap)
            img.paste(tile, (x, y))
            if label_every:
                s = str(r * cols + c)
                tw, th = text_w(s, n_size), text_h(n_size)
                odraw.rectangle([x, y, x + tw + 4, y + th + 2], fill=(0, 0, 0, 150))
                odraw.text((x + 2, y), s, font=font(n_size), fill=(255, 255, 255, 255))
    img = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(img)
    cstep = _step(pd + gap, axis_size) if pd + gap < text_w(str(cols - 1), axis_size) + 4 else 1
    cstep = max(cstep, math.ceil((text_w(str(cols - 1), axis_size) + 6) / (pd + gap)))
    for c in range(0, cols, cstep):  # column and row numbers of the grid
        s = str(c)
        draw.text((x0 + c * (pd + gap) + (pd - text_w(s, axis_size)) // 2, y_top), s, font=font(axis_size), fill=MUTED)
    for r in range(0, rows, _step(pd + gap, axis_size)):
        s = str(r)
        draw.text((x0 - 6 - text_w(s, axis_size), y0 + r * (pd + gap) + (pd - text_h(axis_size)) // 2), s,
                  font=font(axis_size), fill=MUTED)
    meta = {"grid": {"x": x0, "y": y0, "patch": pd, "gap": gap, "rows": rows, "cols": cols}}
    return Picture(img, "patches", meta)


def draw_classes(names: list[str], scores: np.ndarray, *, title: str, subtitle: str | None = None) -> Picture:
    """Horizontal bars, best class on top, each with its score."""
    k = len(names)
    size = 14
    row_h = 34
    names = [shorten(n, 40) for n in names]
    probs = bool(scores.min() >= 0 and scores.max() <= 1.0 + 1e-6)
    lo = 0.0 if scores.min() >= 0 else float(scores.min())
    hi = 1.0 if probs else float(max(scores.max(), 0.0))
    hi = hi if hi > lo else lo + 1.0
    label_w = max(text_w(n, size) for n in names)
    rank_w = text_w(f"{k}.", size)
    bar_w = 420
    x_label = MARGIN + rank_w + 8
    x0 = x_label + label_w + 12
    value_w = text_w("100.0 %", 13) + 12
    title_w = max(text_w(title, 18), text_w(subtitle or "", 13))
    width = max(x0 + bar_w + value_w + MARGIN, min(title_w, 1100) + 2 * MARGIN)
    y0 = MARGIN + text_h(18) + 6 + (text_h(13) + 4 if subtitle else 0) + 14
    tick_size = 11
    height = max(y0 + k * row_h + 10 + text_h(tick_size) + 8 + text_h(13) + MARGIN, 300)
    img, draw = _canvas(width, height)
    _title(draw, MARGIN, MARGIN, title, subtitle, width - 2 * MARGIN)

    def xpos(v: float) -> int:
        return int(round(x0 + (v - lo) / (hi - lo) * bar_w))

    axis_y = y0 + k * row_h + 4
    ticks = [lo + (hi - lo) * t for t in (0, 0.25, 0.5, 0.75, 1.0)]
    for v in ticks:  # light grid lines and the score axis
        x = xpos(v)
        draw.line([x, y0 - 4, x, axis_y], fill=(225, 225, 225))
        s = f"{v * 100:.0f} %" if probs else fmt_tick(v)
        draw.line([x, axis_y, x, axis_y + 4], fill=INK)
        draw.text((x - text_w(s, tick_size) // 2, axis_y + 6), s, font=font(tick_size), fill=INK)
    draw.line([x0, axis_y, x0 + bar_w, axis_y], fill=INK)
    axis = "probability" if probs else "score"
    draw.text((x0 + (bar_w - text_w(axis, 13)) // 2, axis_y + 8 + text_h(tick_size) + 4), axis, font=font(13),
              fill=MUTED)
    lut = colormap("viridis")
    h = text_h(size)
    for i, (name, s) in enumerate(zip(names, scores)):
        y = y0 + i * row_h
        colour = tuple(int(c) for c in lut[int(round(64 + 128 * i / max(k - 1, 1)))])  # best is darkest
        draw.rectangle([xpos(min(0.0, float(s)) if lo < 0 else lo), y + 4, xpos(float(s)), y + row_h - 6], fill=colour)
        draw.text((MARGIN, y + (row_h - 2 - h) // 2), f"{i + 1}.", font=font(size), fill=MUTED)
        draw.text((x0 - 12 - text_w(name, size), y + (row_h - 2 - h) // 2), name, font=font(size),
                  fill=INK)
        value = f"{s * 100:.1f} %" if probs else fmt_tick(float(s))
        draw.text((max(xpos(float(s)), x0) + 6, y + (row_h - 2 - text_h(13)) // 2), value, font=font(13), fill=INK)
    meta = {"bars": {"x0": x0, "y0": y0, "row_h": row_h, "width": bar_w, "range": [lo, hi], "rows": k}}
    return Picture(img, "classes", meta)


def picture(rec: Record, kind: str, options: Options) -> Picture:
    """Draw one kind of picture of a record (ItemError when the record lacks its fields)."""
    fields = rec.fields
    toks = tokens_of(fields)
    special = fields.get("special_tokens_mask")
    special_list = [bool(x) for x in special.reshape(-1)] if isinstance(special, np.ndarray) else None
    about = []
    if isinstance(fields.get("text"), str):
        about.append(f"“{shorten(fields['text'], 90)}”")
    if isinstance(fields.get("path"), str):
        about.append(os.path.basename(fields["path"]) or fields["path"])
    about.append(f"record {rec.index}")
    subtitle = " · ".join(about)
    if kind == "attention":
        att = pick_attention(fields, options.layer, options.head)
        t, tk = att.matrix.shape
        title = f"Attention · layer {att.layer} · {head_words(att)}"
        if att.layer is None:
            title = f"Attention · {head_words(att)} · {att.field}"
        return draw_attention(att.matrix, labels(toks, t, fields), labels(toks, tk, fields), title=title,
                              subtitle=subtitle,
                              row_muted=special_list if special_list and len(special_list) == t else None,
                              col_muted=special_list if special_list and len(special_list) == tk else None)
    if kind in ("posenc", "hidden"):
        found = matrix_field(fields, kind)
        if found is None:
            what = "position_encoding (made by tfm posenc --only)" if kind == "posenc" else \
                "hidden states (" + ", ".join(HIDDEN_FIELDS) + ")"
            raise ItemError(f"record has no {what}", "missing-field")
        name, m = found
        words = {"position_encoding": "Positional encoding", "hidden_states": "Hidden states",
                 "last_hidden_state": "Last hidden state", "inputs_embeds": "Token embeddings"}[name]
        title = f"{words} · {m.shape[0]} positions x {m.shape[1]} dimensions"
        return draw_matrix(m, labels(toks, m.shape[0], fields), title=title, subtitle=subtitle, kind=kind,
                           row_muted=special_list if special_list and len(special_list) == m.shape[0] else None)
    if kind == "patches":
        pi = patch_image(fields)
        if pi is None:
            raise ItemError("record has no patches (made by tfm patchify)", "missing-field")
        title = f"Patches · {pi.rows} x {pi.cols} grid of {pi.patch} px patches · index = row x {pi.cols} + column"
        return draw_patches(pi, title=title, subtitle=subtitle)
    if kind == "classes":
        found = classes_of(fields)
        if found is None:
            raise ItemError("record has no `labels` and `scores` (made by tfm classify)", "missing-field")
        names, scores = found
        return draw_classes(names, scores, title=f"Top {len(names)} classes", subtitle=subtitle)
    raise ItemError(f"there is no picture of {kind}", "bad-value")


# --------------------------------------------------------------------------- the command


def sections_for(fields: dict[str, Any], options: Options, pictures: bool) -> list[str]:
    if options.what is not None:
        chosen = [k for k in options.what if k in (PICTURE_KINDS if pictures else TERMINAL_KINDS)]
        return chosen
    if not pictures:
        return [k for k in DEFAULT_TERMINAL if applicable(fields, k)]
    chosen = [k for k in DEFAULT_PICTURES if applicable(fields, k)]
    if not chosen and applicable(fields, "hidden"):
        chosen = ["hidden"]
    return chosen


class PngTarget:
    """Where pictures go: one file for one record, else PATH/<record>-<kind>.png."""

    def __init__(self, path: Path, many: bool):
        self.path = path
        is_dir = path.is_dir() or str(path).endswith(os.sep)
        self.folder = is_dir or many or path.suffix.lower() != ".png"
        if self.folder:
            if path.exists() and not path.is_dir():
                raise FatalError(f"--png {path}: more than one picture to write, but {path} is a file "
                                 "(give a folder)")
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FatalError(f"cannot create folder {path}: {e.strerror}") from None
        elif not path.parent.is_dir():
            raise FatalError(f"cannot write {path}: folder {path.parent} does not exist")
        self.single_used = False

    def full(self) -> bool:
        return not self.folder and self.single_used

    def file_for(self, rec: Record, kind: str) -> Path:
        if self.folder:
            return self.path / f"{rec.index}-{kind}.png"
        self.single_used = True
        return self.path


def _lookahead(records: Iterable[Record], n: int) -> tuple[list[Record], Iterable[Record]]:
    it = iter(records)
    head = []
    for rec in it:
        head.append(rec)
        if len(head) >= n:
            break
    return head, it


def show(records: Iterable[Record], options: Options, out: BinaryIO) -> int:
    """Render every record to ``out`` (or draw pictures); returns the exit status."""
    failed = 0
    target = None
    if options.png is not None:
        # one picture file or a folder of them: that depends on whether a second record comes
        folder_given = options.png.is_dir() or options.png.suffix.lower() != ".png"
        head, rest = ([], records) if folder_given else _lookahead(records, 2)
        target = PngTarget(options.png, many=len(head) > 1)
        records = _chain(head, rest)
    view = None if target else TerminalView(use_color(), terminal_width(), options)
    for rec in records:
        ok = _one(rec, options, view, target, out)
        process.state.records_done += 1
        if not ok:
            failed += 1
            if options.fail_fast:
                break
    return EXIT_ITEMS_FAILED if failed else EXIT_OK


def _chain(head: list[Record], rest: Iterable[Record]):
    yield from head
    yield from rest


def _one(rec: Record, options: Options, view: TerminalView | None, target: PngTarget | None, out: BinaryIO) -> bool:
    """Show one record; False when it is (or became) a failure."""
    if rec.error is not None and not rec.fields:  # unreadable here: report it
        process.error(f"{rec.where}: {rec.error.get('message', '')}")
        if view is not None:
            process.protected_write(out, [view.render(rec, [])[0].encode("utf-8")])
        return False
    if rec.error is not None:  # failed upstream, reported there
        if view is not None:
            process.protected_write(out, [view.render(rec, [])[0].encode("utf-8")])
        else:
            process.warn(f"{rec.where}: skipped a record that failed upstream: {rec.error.get('message', '')}")
        return False
    if view is not None:
        text, errors = view.render(rec, sections_for(rec.fields, options, pictures=False))
        process.protected_write(out, [text.encode("utf-8")])
        for e in errors:
            process.error(f"{rec.where}: {e}")
        return not errors
    assert target is not None
    kinds = sections_for(rec.fields, options, pictures=True)
    ok = True
    if not kinds:
        if options.what is not None:
            process.error(f"{rec.where}: none of --what {','.join(options.what)} can be drawn "
                          f"(pictures exist for {', '.join(PICTURE_KINDS)})")
            return False
        process.warn(f"{rec.where}: nothing to draw in this record (it has {', '.join(rec.fields) or 'no fields'})")
        return True
    for kind in kinds:
        if target.full():
            process.warn(f"{rec.where}: {kind} not drawn: --png names one file (give a folder for every picture)")
            continue
        try:
            pic = picture(rec, kind, options)
        except ItemError as e:
            process.error(f"{rec.where}: {e}")
            ok = False
            continue
        path = target.file_for(rec, kind)
        pic.save(path)
        if not options.quiet:
            process.say(f"wrote {path} ({kind}, {pic.image.width}×{pic.image.height})")
    return ok
