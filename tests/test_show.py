"""tfm show: terminal rendering of real pipes, and pictures whose pixels follow the data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import json_records, stderr_lines, tfm
from tfm.core.show import colormap

ANSI = re.compile(rb"\x1b\[")
PLAIN = {"NO_COLOR": "", "FORCE_COLOR": "", "TERM": "xterm-256color", "COLUMNS": "100"}


def show(*args, input, env=None):
    return tfm("show", *args, input=input, env={**PLAIN, **(env or {})})


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def png_info(path):
    from PIL import Image

    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = Image.open(path)
    img.load()
    assert img.format == "PNG"
    return img.convert("RGB"), dict(img.text)


def lut_index(pixels: np.ndarray, cmap: str = "viridis") -> tuple[np.ndarray, np.ndarray]:
    """Position along the colour map of each pixel, and how far the pixel is from the map."""
    lut = colormap(cmap).astype(np.int64)
    d = ((pixels.astype(np.int64)[..., None, :] - lut) ** 2).sum(-1)
    return d.argmin(-1), d.min(-1)


def cell_pixels(img, box, i, j) -> np.ndarray:
    a = np.asarray(img)
    x, y, w, h = box["x"] + j * box["cell_w"], box["y"] + i * box["cell_h"], box["cell_w"], box["cell_h"]
    return a[y:y + h, x:x + w].reshape(-1, 3)


def cell_colour(img, box, i, j) -> np.ndarray:
    """The colour most pixels of a cell have (a number may be written on it)."""
    px = cell_pixels(img, box, i, j)
    colours, counts = np.unique(px, axis=0, return_counts=True)
    return colours[counts.argmax()]


# --------------------------------------------------------------------------- real pipes


@pytest.fixture(scope="module")
def tokens(tiny_bert) -> bytes:
    return tfm("tokenize", "--model", tiny_bert, input="A cat sits on the mat.\n", check=True).stdout


@pytest.fixture(scope="module")
def attend_record(tiny_bert, tokens) -> bytes:
    out = tokens
    for stage in (["embed"], ["posenc"], ["attend", "--layer", "0"]):
        out = tfm(*stage, "--model", tiny_bert, input=out, check=True).stdout
    return out


def test_tokenize_encode_pipe_shows_tokens_and_tensors(tiny_bert, tokens):
    encoded = tfm("encode", "--model", tiny_bert, input=tokens, check=True).stdout
    proc = show(input=encoded)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    out = proc.stdout.decode()
    rec = json_records(encoded)[0]
    n, d = np.asarray(rec["last_hidden_state"]).shape
    assert "text: A cat sits on the mat." in out
    assert f"Tokens ({n})" in out
    for i, (tok, tid) in enumerate(zip(rec["tokens"], rec["input_ids"])):
        assert re.search(rf"^\s*{i}\s+{re.escape(tok)}\s+{tid}\b", out, re.M), tok
    assert re.search(r"^\s*1\s+a\s+\d+\s+0–1\s+A\s*$", out, re.M)  # offsets and the text they cover
    assert re.search(rf"^last_hidden_state\s+\({n}, {d}\)\s+float32\s", out, re.M)
    assert re.search(rf"^input_ids\s+\({n},\)\s+int64\s", out, re.M)
    assert "Attention" not in out  # nothing to draw it from
    assert not ANSI.search(proc.stdout)


def test_encode_taps_pick_the_layer(tiny_bert, tokens):
    proc = tfm("encode", "--model", tiny_bert, "--tap", "attentions", input=tokens)
    if proc.returncode == 2 and b"--tap" in proc.stderr:
        pytest.skip("tfm encode --tap is not built yet")
    assert proc.returncode == 0, proc.stderr.decode()
    rec = json_records(proc.stdout)[0]
    layers = sorted(int(k.split(".")[1]) for k in rec if re.fullmatch(r"layers\.\d+\.attention\.probs", k))
    assert layers
    out = show("--layer", layers[-1], "--what", "attention", input=proc.stdout)
    assert out.returncode == 0, out.stderr.decode()
    assert f"layer {layers[-1]} · head 0 of" in out.stdout.decode()


def test_attend_record_shows_table_summary_and_heatmap(attend_record):
    rec = json_records(attend_record)[0]
    heads, t, _ = np.asarray(rec["attentions"]).shape
    proc = show("--head", "1", input=attend_record)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    out = proc.stdout.decode()
    assert "seam: layers.0.input" in out
    assert f"Tokens ({t})" in out
    assert re.search(rf"^attentions\s+\({heads}, {t}, {t}\)\s+float32\s+[-\d.e]+", out, re.M)
    assert re.search(rf"^hidden_states\s+\({t}, \d+\)\s+float32", out, re.M)
    assert f"Attention · layer 0 · head 1 of {heads}" in out
    heat = out.split(f"head 1 of {heads}")[1]
    weights = np.asarray(rec["attentions"])[1]
    rows = re.findall(r"^\s*(\S+)((?:\s+(?:\.\d\d|1\.0|·))+)\s*$", heat, re.M)
    assert [label for label, _ in rows] == rec["tokens"]  # a row per token, labelled, with its weights
    for i, (_, cells) in enumerate(rows):
        cells = cells.split()
        assert len(cells) == t
        j = int(np.argmax(weights[i]))
        assert cells[j] == (f"{weights[i, j]:.2f}"[1:] if weights[i, j] < 0.995 else "1.0")
    header = heat.split("\n[CLS]")[0]
    assert "[\nC\nL\nS\n]" in "\n".join(line.split()[0] for line in header.splitlines() if line.strip())
    assert not ANSI.search(proc.stdout)


def test_no_escape_codes_without_a_terminal_or_with_no_color(attend_record):
    # every other test here reads a pipe too, and checks for escape codes as well
    proc = show("--what", "attention", "--max-tokens", "3", input=attend_record,
                env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr.decode()
    assert not ANSI.search(proc.stdout) and proc.stderr == b""
    out = proc.stdout.decode()
    t = len(json_records(attend_record)[0]["tokens"])
    assert f"showing 3 of {t} rows and 3 of {t} columns (--max-tokens)" in out
    rows = [line for line in out.splitlines() if re.match(r"^\s*\S+(\s+(\.\d\d|1\.0|·)){3}\s*$", line)]
    assert len(rows) == 3


@pytest.mark.parametrize("env, tty, colour", [
    ({}, False, False), ({}, True, True), ({"NO_COLOR": "1"}, True, False), ({"TERM": "dumb"}, True, False),
    ({"FORCE_COLOR": "1"}, False, True), ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, False, False),
])
def test_colour_only_for_a_terminal(monkeypatch, env, tty, colour):
    from tfm.core.show import Options, TerminalView, use_color
    from tfm.core.stream import Record

    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    class Out:
        def isatty(self):
            return tty

    assert use_color(Out()) is colour
    rec, _ = attention_record()
    text, errors = TerminalView(use_color(Out()), 100, Options()).render(
        Record(parse(rec), "line 1", 1), ["tokens", "tensors", "attention"])
    assert not errors
    assert ("\x1b[" in text) is colour
    assert "Attention · head 0 of 3 · attentions" in text


def parse(rec: dict) -> dict:
    from tfm.core.stream import parse_json_record

    return parse_json_record(json.dumps(rec))


# --------------------------------------------------------------------------- pictures


def attention_record(t=6, heads=3, at=(4, 1), head=1, seed=0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((heads, t, t)) * 0.1
    a[head][at] = 0.9  # the one strong weight
    a[(head + 1) % heads][0, t - 1] = 0.95  # another head's maximum lies elsewhere
    a = a / a.sum(-1, keepdims=True)
    toks = ["[CLS]", "the", "cat", "sat", "down", "[SEP]", "x", "y", "z"][:t]
    return {"text": "the cat sat down", "tokens": toks, "attentions": a.astype(np.float32).tolist()}, a


def posenc_record() -> dict:
    pe = np.sin(np.arange(12)[:, None] / (1 + np.arange(24)[None, :])).astype(np.float32) * 0.5
    pe[5, 7], pe[10, 3] = 1.0, -1.0
    return {"tokens": ["[CLS]"] + [f"w{i}" for i in range(10)] + ["[SEP]"], "position_encoding": pe.tolist()}


PATCH_GRID, PATCH = (2, 3), 4


def patch_record() -> dict:
    rows, cols = PATCH_GRID
    y, x = np.mgrid[0:PATCH, 0:PATCH]
    patches = []
    for i in range(rows * cols):
        # red tells the patch, green the pixel's column, blue its row; flattened (P, P, C)
        patch = np.stack([np.full((PATCH, PATCH), i / 5.0), x / 3.0, y / 3.0], axis=-1)
        patches.append(patch.reshape(-1) * 2 - 1)  # normalised to [-1, 1]
    return {"path": "photos/cat.png", "patches": np.array(patches, dtype=np.float32).tolist(),
            "grid": [rows, cols], "patch_size": PATCH}


UPSTREAM_ERROR = {"record": 2, "ok": False, "error": {"kind": "missing-field", "message": "line 2: record lacks x"}}
CLASSES = {"path": "photos/cat.png", "labels": ["tabby cat", "tiger cat", "lynx"], "scores": [0.7, 0.2, 0.1]}


def big_attention_record(t=200) -> dict:
    big = np.full((2, t, t), 0.1 / t, dtype=np.float32)
    big[1, 150, 20] = 0.9  # the pictures are drawn with --head 1
    return {"attentions": big.tolist()}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """One run of `tfm show --png DIR --head 1` over a stream of hand-made records (and a failed one)."""
    folder = tmp_path_factory.mktemp("show") / "maps"
    stream = jsonl(attention_record()[0], posenc_record(), patch_record(), CLASSES, UPSTREAM_ERROR,
                   big_attention_record())
    proc = show("--png", folder, "--head", "1", input=stream)
    assert proc.returncode == 1, proc.stderr.decode()  # the failed record is counted
    assert proc.stdout == b""  # pictures instead of the terminal view
    return folder, proc


def test_many_records_go_to_a_folder(pictures):
    folder, proc = pictures
    names = ["1-attention.png", "2-posenc.png", "3-patches.png", "4-classes.png", "6-attention.png"]
    assert sorted(p.name for p in folder.iterdir()) == names  # no temporary files left behind
    lines = stderr_lines(proc)
    assert lines.pop(4) == "tfm show: warning: line 5: skipped a record that failed upstream: line 2: record lacks x"
    assert len(lines) == len(names)
    for name, line in zip(names, lines):
        img, text = png_info(folder / name)
        assert 300 <= img.width <= 1600 and 300 <= img.height <= 1600, name
        assert text["tfm:kind"] == name.split("-")[1][:-4]
        assert line == f"tfm show: wrote {folder / name} ({text['tfm:kind']}, {img.width}×{img.height})"


def colour_indices(img, box, cmap="viridis") -> np.ndarray:
    out = np.zeros((box["rows"], box["cols"]), dtype=int)
    for i in range(box["rows"]):
        for j in range(box["cols"]):
            k, dist = lut_index(cell_colour(img, box, i, j)[None], cmap)
            assert dist[0] <= 12, (i, j)  # every cell is painted in a colour of the map
            out[i, j] = k[0]
    return out


def test_attention_png_brightest_cell_is_the_maximum(pictures):
    _, a = attention_record()
    img, text = png_info(pictures[0] / "1-attention.png")
    box = json.loads(text["tfm:heatmap"])
    assert (box["rows"], box["cols"]) == (6, 6)
    assert box["cell_w"] >= 20  # a small matrix gets big cells
    assert box["x"] > 40 and box["y"] > 60  # room for the token labels
    assert box["x"] + 6 * box["cell_w"] < img.width and box["y"] + 6 * box["cell_h"] <= img.height
    idx = colour_indices(img, box)
    assert np.unravel_index(idx.argmax(), idx.shape) == (4, 1)
    assert idx[4, 1] == 255
    # brighter cells hold larger weights: the colour order is the data's order
    order = np.argsort(a[1].ravel(), kind="stable")
    assert np.all(np.diff(idx.ravel()[order]) >= -1)
    # the brightest pixel of the whole heatmap region lies in that cell
    region = np.asarray(img)[box["y"]:box["y"] + 6 * box["cell_h"], box["x"]:box["x"] + 6 * box["cell_w"]]
    colours, inverse = np.unique(region.reshape(-1, 3), axis=0, return_inverse=True)
    k, dist = lut_index(colours)
    k = np.where(dist <= 12, k, -1)[inverse.reshape(-1)].reshape(region.shape[:2])
    y, x = np.unravel_index(k.argmax(), k.shape)
    assert (y // box["cell_h"], x // box["cell_w"]) == (4, 1)


def test_attention_png_of_a_long_sequence(pictures):
    img, text = png_info(pictures[0] / "6-attention.png")
    box = json.loads(text["tfm:heatmap"])
    assert (box["rows"], box["cols"]) == (200, 200)
    assert box["cell_w"] >= 2  # every cell keeps pixels of its own
    assert lut_index(cell_colour(img, box, 150, 20)[None])[0][0] == 255
    assert lut_index(cell_colour(img, box, 20, 150)[None])[0][0] == 0


def test_attention_png_to_one_file_mean_of_heads(tmp_path):
    rec, a = attention_record()
    mean = a.mean(0)
    path = tmp_path / "mean.png"
    proc = show("--png", path, "--head", "mean", "--quiet", input=jsonl(rec))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"" and proc.stderr == b""
    assert list(tmp_path.iterdir()) == [path]
    img, text = png_info(path)
    idx = colour_indices(img, json.loads(text["tfm:heatmap"]))
    assert np.unravel_index(idx.argmax(), idx.shape) == np.unravel_index(mean.argmax(), mean.shape)


def test_position_encoding_png(pictures):
    img, text = png_info(pictures[0] / "2-posenc.png")
    box = json.loads(text["tfm:heatmap"])
    assert (box["rows"], box["cols"]) == (12, 24)
    idx = colour_indices(img, box, "diverging")
    assert np.unravel_index(idx.argmax(), idx.shape) == (5, 7)  # deepest red
    assert np.unravel_index(idx.argmin(), idx.shape) == (10, 3)  # deepest blue
    assert abs(int(idx[0, 0]) - 128) <= 1  # sin(0) = 0 is the middle of the scale
    assert json.loads(text["tfm:range"]) == [-1.0, 1.0]


def test_patch_grid_png(pictures):
    img, text = png_info(pictures[0] / "3-patches.png")
    rows, cols = PATCH_GRID
    g = json.loads(text["tfm:grid"])
    assert (g["rows"], g["cols"]) == (rows, cols) and g["patch"] >= 48
    a = np.asarray(img).astype(int)
    s = g["patch"] // PATCH  # display pixels per source pixel
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        for px in range(PATCH):  # the bottom row of source pixels, clear of the index label
            cy = g["y"] + r * (g["patch"] + g["gap"]) + (PATCH - 1) * s + s // 2
            cx = g["x"] + c * (g["patch"] + g["gap"]) + px * s + s // 2
            expected = np.round(np.array([i / 5.0, px / 3.0, 1.0]) * 255)
            assert np.abs(a[cy, cx] - expected).max() <= 1, (i, px, a[cy, cx], expected)
    gx = g["x"] + g["patch"]  # the gap between patches is blank paper
    assert (a[g["y"] + g["patch"] - 1, gx] == 255).all()


def test_class_bars_png(pictures):
    img, text = png_info(pictures[0] / "4-classes.png")
    bars = json.loads(text["tfm:bars"])
    a = np.asarray(img).astype(int)
    lengths = []
    for k in range(3):
        yy = bars["y0"] + k * bars["row_h"] + bars["row_h"] // 2 - 1
        line = a[yy, bars["x0"]:bars["x0"] + bars["width"] + 1].sum(-1) < 600  # not paper, not grid line
        lengths.append(int(np.argmin(line)) if not line.all() else len(line))
    for length, score in zip(lengths, CLASSES["scores"]):
        assert abs(length - score * bars["width"]) <= 2, (lengths, CLASSES["scores"])


# --------------------------------------------------------------------------- streams and errors


def test_error_records_are_shown_and_counted():
    good, _ = attention_record()
    stream = jsonl(good, UPSTREAM_ERROR) + "not json\n"
    proc = show(input=stream)
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert "── record 1" in out and "Attention" in out
    assert "error (missing-field): line 2: record lacks x" in out
    assert "error (bad-json)" in out
    # the upstream failure was reported upstream; only the unreadable line is reported here
    assert stderr_lines(proc) == ["tfm show: error: line 3: malformed JSON: Expecting value: line 1 column 1 (char 0)"]



def test_layer_choice_and_unsatisfiable_requests():
    _, a = attention_record(t=4, at=(2, 1))
    taps = {"tokens": ["[CLS]", "hi", "there", "[SEP]"],
            "layers.0.attention.probs": a.tolist(), "layers.1.attention.probs": a.tolist(),
            "layers.1.output": np.zeros((4, 8)).tolist()}
    attend = {"tokens": taps["tokens"], "seam": "layers.2.input", "attentions": a.tolist()}
    proc = show("--layer", "1", "--what", "attention,tensors", input=jsonl(taps, attend))
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert "layer 1 · head 0 of 3 · layers.1.attention.probs" in out
    assert re.search(r"^layers\.1\.output\s+\(4, 8\)\s+float32", out, re.M)
    assert "Tokens" not in out
    assert re.search(r"^attentions\s+\(3, 4, 4\)", out, re.M)  # record 2 still gets its other sections
    assert stderr_lines(proc) == [
        "tfm show: error: line 2: record has no attention weights of layer 1 (it has layer 2)"]


def test_head_and_layer_choice_in_core():
    from tfm.core.errors import FatalError, ItemError
    from tfm.core.show import parse_head, parse_what, pick_attention

    _, a = attention_record(t=4, at=(2, 1))
    fields = {"layers.3.attention.probs": a, "layers.1.attention.probs": a[:, :, ::-1]}
    att = pick_attention(fields, None, 1)  # the lowest layer by default
    assert (att.layer, att.field, att.heads) == (1, "layers.1.attention.probs", 3)
    assert np.array_equal(att.matrix, a[1, :, ::-1])
    assert np.allclose(pick_attention(fields, 3, "mean").matrix, a.mean(0))
    with pytest.raises(ItemError, match=r"has 3 heads \(0\.\.2\)"):
        pick_attention(fields, 3, 3)
    with pytest.raises(ItemError, match="no attention weights of layer 0 .it has layer 1, 3."):
        pick_attention(fields, 0, 0)
    assert parse_head("mean") == "mean" and parse_head("2") == 2
    with pytest.raises(FatalError, match="--head must be"):
        parse_head("first")
    assert parse_what(None) is None and parse_what("tokens, attention") == ("tokens", "attention")
    with pytest.raises(FatalError, match="unknown section 'colours'"):
        parse_what("tokens,colours")


def test_closing_the_pipe_early_is_quiet(attend_record, tmp_path):
    import os
    import subprocess

    from conftest import TFM

    source = tmp_path / "many.jsonl"
    source.write_bytes(attend_record * 50)
    with open(source, "rb") as stdin:
        proc = subprocess.Popen(TFM + ["show"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, **PLAIN})
        proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        err = proc.stderr.read()
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert err == b""
