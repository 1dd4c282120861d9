"""tfm.core.images: opening hostile image files, walking folders, and preprocessing that equals Hugging Face's.

Bad inputs 1-6 of shared/bad-inputs.md are made here in a tmp dir; the numerics are
checked against tests/data/preprocess-reference.npz (made by
tests/data/make_preprocess_reference.py with transformers' image processors).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import struct
import sys
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tfm.core import images
from tfm.core.errors import FatalError, ItemError
from tfm.core.images import Preprocessor, open_image, walk
from tfm.core.modeldir import ModelDir

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
PHOTOS = DATA / "photos"
FIXTURES = ROOT / "tests" / "fixtures"
TOL = 1e-6  # max |tfm - HF| allowed; measured: 0.0 for every photo and config


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "preprocess-reference.npz") as z:
        return {k: z[k] for k in z.files}


@contextmanager
def deadline(seconds: int = 5):
    """Fail instead of hanging (opening a FIFO would block)."""
    def boom(signum, frame):
        raise AssertionError(f"hung for {seconds} s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refused(path, kind: str, *words: str, **kw) -> ItemError:
    with pytest.raises(ItemError) as info:
        open_image(path, **kw)
    err = info.value
    assert err.kind == kind, (err.kind, str(err))
    message = str(err)
    assert "\n" not in message and message
    for word in words:
        assert word in message, message
    return err


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_file(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def pil(path) -> Image.Image:
    """The file as plain Pillow opens it (to show what tfm corrects), file closed."""
    with Image.open(path) as img:
        img.load()
        return img


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ 1. not images


def test_zero_byte_file(tmp_path):
    refused(write(tmp_path, "empty.jpg", b""), "not-an-image", "empty")


def test_text_file_named_jpg(tmp_path):
    refused(write(tmp_path, "notes.jpg", b"shopping list:\n- milk\n- bread\n"), "not-an-image", "text")


def test_random_bytes_named_png(tmp_path):
    data = bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))
    refused(write(tmp_path, "noise.png", b"\x00\x01" + data), "not-an-image", "not an image")


def test_damaged_png_header(tmp_path):
    refused(write(tmp_path, "bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), "corrupt", "PNG")


# ------------------------------------------------------------------------------ 2. truncated


@pytest.mark.parametrize("name", ["chelsea.jpg", "rocket.png"])
def test_cut_half_way_is_truncated(tmp_path, name):
    data = (PHOTOS / name).read_bytes()
    refused(write(tmp_path, "cut-" + name, data[: len(data) // 2]), "truncated", "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_even_if_someone_enabled_filling(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = (PHOTOS / "coffee.jpg").read_bytes()
    refused(write(tmp_path, "cut.jpg", data[: len(data) * 3 // 4]), "truncated")


@pytest.mark.parametrize("fmt,kw", [("JPEG", {"progressive": True, "quality": 90}), ("PNG", {"interlace": 1}),
                                    ("GIF", {}), ("WEBP", {"quality": 80}), ("TIFF", {}), ("BMP", {})])
def test_other_truncations(tmp_path, fmt, kw):
    with Image.open(PHOTOS / "rocket.png") as f:
        photo = f.convert("RGB")
    if fmt == "GIF":
        photo = photo.quantize(64)
    data = encode(photo, fmt, **kw)
    refused(write(tmp_path, f"cut.{fmt.lower()}", data[: len(data) // 2]), "truncated")


# ------------------------------------------------------------------------------ 3. too many pixels


def test_png_bomb_header_refused_before_decoding(tmp_path):
    bomb = png_file(20000, 10000, 8, 2, b"\x00" * 64)  # declares 200 megapixels, holds nearly nothing
    path = write(tmp_path, "bomb.png", bomb)
    assert path.stat().st_size < 200
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = refused(path, "too-large")
    assert str(err) == "20000×10000 = 200,000,000 pixels, over the limit of 40,000,000 (TFM_MAX_PIXELS)"
    assert not caught, [str(w.message) for w in caught]


def test_real_100_megapixel_image_refused(tmp_path):
    row = b"\x00" + b"\x00" * 1250  # filter byte + 10000 one-bit pixels
    data = png_file(10000, 10000, 1, 0, row * 10000)  # a valid all-black 1-bit PNG, ~12 KB
    path = write(tmp_path, "huge.png", data)
    with Image.open(path) as check:
        assert check.size == (10000, 10000)
    refused(path, "too-large", "10000×10000 = 100,000,000 pixels", "TFM_MAX_PIXELS")


def test_pixel_limit_is_tfm_s_and_exact(monkeypatch):
    photo = PHOTOS / "rocket.png"  # 256×171 = 43,776 pixels
    monkeypatch.setattr(images, "MAX_PIXELS", 43_775)
    refused(photo, "too-large", "256×171 = 43,776 pixels, over the limit of 43,775")
    monkeypatch.setattr(images, "MAX_PIXELS", 43_776)
    assert open_image(photo).size == (256, 171)
    assert open_image(photo, max_pixels=43_776).size == (256, 171)
    refused(photo, "too-large", max_pixels=1000)


def test_max_pixels_from_environment(monkeypatch):
    monkeypatch.delenv("TFM_MAX_PIXELS", raising=False)
    assert images._max_pixels_from_env() == 40_000_000
    monkeypatch.setenv("TFM_MAX_PIXELS", "1000000")
    assert images._max_pixels_from_env() == 1_000_000
    for bad in ("lots", "-5", "0", "1e6"):
        monkeypatch.setenv("TFM_MAX_PIXELS", bad)
        with pytest.raises(FatalError, match="TFM_MAX_PIXELS"):
            images._max_pixels_from_env()


# ------------------------------------------------------------------------------ 4. modes -> RGB


def test_16_bit_grey_png_stays_mid_grey(tmp_path, ref):
    path = write(tmp_path, "grey16.png", ref["syn__grey16_png__file"].tobytes())
    assert pil(path).mode == "I;16"
    rgb = np.asarray(open_image(path))
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 8, 3)
    assert np.abs(rgb.astype(int) - 128).max() <= 1
    assert np.array_equal(rgb, ref["syn__grey16_png__tfm"])
    assert (ref["syn__grey16_png__hf"] == 255).all()  # what Pillow's convert (and so HF) makes of it


def test_16_bit_ramp_scaled_by_257(tmp_path, ref):
    path = write(tmp_path, "ramp16.png", ref["syn__ramp16_png__file"].tobytes())
    rgb = np.asarray(open_image(path))
    assert np.array_equal(rgb, ref["syn__ramp16_png__tfm"])
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255


def test_16_bit_rgb_png(tmp_path):
    raw = b"".join(b"\x00" + np.full((4, 3), 32768, ">u2").tobytes() for _ in range(4))
    rgb = np.asarray(open_image(write(tmp_path, "rgb16.png", png_file(4, 4, 16, 2, raw))))
    assert (np.abs(rgb.astype(int) - 128) <= 1).all()


@pytest.mark.parametrize("case", ["cmyk_jpeg", "palette_trns_png", "la_png", "rgba_png", "bilevel_png",
                                  "animated_gif", "exif6_jpeg"])
def test_modes_match_hugging_face_load_image(tmp_path, ref, case):
    path = write(tmp_path, case.replace("_", "."), ref[f"syn__{case}__file"].tobytes())
    img = open_image(path)
    assert img.mode == "RGB"
    assert np.array_equal(np.asarray(img), ref[f"syn__{case}__hf"])


def test_exif_orientation_6(tmp_path, ref):
    path = write(tmp_path, "exif6.jpg", ref["syn__exif6_jpeg__file"].tobytes())
    assert pil(path).size == (40, 20)
    assert open_image(path).size == (20, 40)


def test_exif_orientation_made_here(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 30, 30))
    img.paste((0, 0, 255), (0, 0, 10, 10))  # a blue square top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    upright = open_image(write(tmp_path, "o6.jpg", encode(img, "JPEG", exif=exif, quality=95)))
    assert upright.size == (20, 40)
    r, g, b = upright.getpixel((15, 5))  # the blue corner is now top-right
    assert b > 200 and r < 60


def test_cmyk_jpeg_colour(tmp_path):
    data = encode(Image.new("RGB", (16, 16), (200, 100, 50)).convert("CMYK"), "JPEG", quality=95)
    img = open_image(write(tmp_path, "cmyk.jpg", data))
    assert pil(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert np.abs(np.asarray(img).astype(int) - (200, 100, 50)).max() <= 3


def test_palette_transparency_keeps_palette_colour(tmp_path):
    pal = Image.new("P", (4, 2), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((3, 1), 1)
    img = open_image(write(tmp_path, "p.png", encode(pal, "PNG", transparency=0)))
    # documented: alpha dropped like Image.convert("RGB") / HF convert_rgb, not composited
    assert img.getpixel((0, 0)) == (255, 0, 0) and img.getpixel((3, 1)) == (0, 255, 0)
    via_rgba = pil(tmp_path / "p.png").convert("RGBA").convert("RGB")
    assert np.array_equal(np.asarray(img), np.asarray(via_rgba))


def test_grey_la_and_bilevel(tmp_path):
    assert open_image(write(tmp_path, "l.png", encode(Image.new("L", (3, 3), 77), "PNG"))).getpixel((1, 1)) == (77,) * 3
    la = Image.new("LA", (3, 3), (90, 0))
    assert open_image(write(tmp_path, "la.png", encode(la, "PNG"))).getpixel((1, 1)) == (90,) * 3
    one = Image.new("1", (3, 3), 1)
    assert open_image(write(tmp_path, "one.png", encode(one, "PNG"))).getpixel((1, 1)) == (255,) * 3


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    path = write(tmp_path, "anim.gif", data)
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    img = open_image(path)
    assert img.mode == "RGB" and img.getpixel((4, 3)) == (255, 0, 0)
    webp = encode(frames[1], "WEBP", save_all=True, append_images=[frames[2]], lossless=True)
    assert open_image(write(tmp_path, "anim.webp", webp)).getpixel((4, 3)) == (0, 255, 0)


@pytest.mark.parametrize("array,expected", [
    (np.full((3, 4), 0.5, np.float32), 128),          # F within 0..1: scaled by 255
    (np.full((3, 4), 77.0, np.float32), 77),          # F holding whole numbers 0..255: taken as is
    (np.full((3, 4), 32768, np.int32), 128),          # I: 16-bit samples
    (np.full((3, 4), 65535, np.uint16), 255),         # I;16
])
def test_float_and_integer_modes(tmp_path, array, expected):
    img = open_image(write(tmp_path, "x.tif", encode(Image.fromarray(array), "TIFF")))
    assert img.mode == "RGB" and set(np.asarray(img).ravel().tolist()) == {expected}


@pytest.mark.parametrize("array", [np.full((3, 4), 300.5, np.float32), np.full((3, 4), -1.0, np.float32),
                                   np.full((3, 4), 70000, np.int32), np.full((3, 4), np.nan, np.float32)])
def test_unpredictable_modes_refused(tmp_path, array):
    refused(write(tmp_path, "x.tif", encode(Image.fromarray(array), "TIFF")), "unsupported-mode")


# ------------------------------------------------------------------------------ 5. refused formats


@pytest.mark.parametrize("name,data,label", [
    ("eps.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto\n", "PostScript/EPS"),
    ("pdf.png", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", "PDF"),
    ("fits.png", b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8", "FITS"),
    ("psd.jpg", b"8BPS\x00\x01" + b"\x00" * 40, "Photoshop PSD"),
])
def test_refused_formats(tmp_path, monkeypatch, name, data, label):
    from PIL import EpsImagePlugin, FitsImagePlugin

    def never(*a, **k):
        raise AssertionError("a refused format's plugin was run")
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", never)
    monkeypatch.setattr(FitsImagePlugin.FitsImageFile, "_open", never)
    monkeypatch.setattr(EpsImagePlugin, "_accept", never)
    refused(write(tmp_path, name, data), "format-refused", label, "JPEG, PNG")


def test_real_eps_file_is_refused(tmp_path):
    data = encode(Image.new("RGB", (4, 4)), "EPS")  # Pillow writes EPS without Ghostscript
    assert data.startswith(b"%!PS-Adobe")
    refused(write(tmp_path, "real.png", data), "format-refused", "EPS")


# ------------------------------------------------------------------------------ files that are not files


def test_fifo_and_devices_never_block(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with deadline():
        refused(fifo, "not-a-file", "FIFO")
        refused("/dev/zero", "not-a-file", "character device")
        refused(tmp_path, "not-a-file", "folder")


def test_missing_and_unreadable(tmp_path, monkeypatch):
    refused(tmp_path / "nope.jpg", "missing")
    path = write(tmp_path, "locked.jpg", (PHOTOS / "chelsea.jpg").read_bytes())
    real_open = os.open

    def deny(p, *a, **k):
        if os.fspath(p) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_open(p, *a, **k)
    monkeypatch.setattr(images.os, "open", deny)
    refused(path, "unreadable", "permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod 000 files")
def test_chmod_000(tmp_path):
    path = write(tmp_path, "locked.jpg", (PHOTOS / "chelsea.jpg").read_bytes())
    path.chmod(0)
    refused(path, "unreadable")


# ------------------------------------------------------------------------------ 6. walking


@pytest.fixture
def tree(tmp_path):
    """A folder with every kind of trouble; returns (root, outside file)."""
    photo = (PHOTOS / "chelsea.jpg").read_bytes()
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "empty-dir").mkdir()
    for rel in ["a.jpg", "B.PNG", "sub/c.jpg", "sub/deeper/d.jpeg", ".hidden.jpg", ".cache/e.jpg", "z.webp"]:
        (root / rel).write_bytes(photo)
    (root / "notes.txt").write_text("not an image, not reported\n")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(photo)
    os.symlink(outside, root / "link-out.jpg")
    os.symlink(root / "a.jpg", root / "link-in.jpg")
    os.symlink("..", root / "sub" / "up")  # a directory loop
    os.symlink(root, root / "self")
    os.mkfifo(root / "pipe.jpg")
    os.mkfifo(root / "pipe")  # not an image name: passed over
    os.symlink("/dev/zero", root / "zero.jpg")
    os.symlink(root / "gone.jpg", root / "dangling.jpg")
    (root / os.fsdecode(b"bad-\xff.jpg")).write_bytes(photo)
    return root, outside


def test_walk_reports_everything_and_finishes(tree):
    root, _ = tree
    with deadline():
        got = [(p, e) for p, e in walk([str(root)])]
    rel = [(os.path.relpath(p, root), e.kind if e else None) for p, e in got]
    assert rel == [
        ("B.PNG", None),
        ("a.jpg", None),
        ("bad-\\xff.jpg", "bad-name"),
        ("dangling.jpg", "missing"),
        ("link-in.jpg", None),
        ("link-out.jpg", "outside"),
        ("pipe.jpg", "not-a-file"),
        ("self", "skipped"),
        ("sub/c.jpg", None),
        ("sub/deeper/d.jpeg", None),
        ("sub/up", "skipped"),
        ("z.webp", None),
        ("zero.jpg", "not-a-file"),
    ]
    for path, error in got:
        path.encode("utf-8")  # every path can go into a UTF-8 record
        if error is not None:
            assert "\n" not in str(error)
    messages = {os.path.basename(p): str(e) for p, e in got if e}
    assert "outside the folder" in messages["link-out.jpg"]
    assert "/dev/zero" in messages["zero.jpg"] and "character device" in messages["zero.jpg"]
    assert "FIFO" in messages["pipe.jpg"]
    assert "not valid UTF-8" in messages["bad-\\xff.jpg"]
    assert "not followed" in messages["up"]


def test_walk_candidates_all_open(tree):
    root, _ = tree
    with deadline():
        for path, error in walk([str(root)]):
            if error is None:
                assert open_image(path).mode == "RGB"


def test_walk_glob_and_recursion(tree):
    root, _ = tree
    only = lambda **kw: [os.path.relpath(p, root) for p, e in walk([str(root)], **kw) if e is None]
    assert only(glob="sub/*") == ["sub/c.jpg", "sub/deeper/d.jpeg"]
    assert only(glob="c.*") == ["sub/c.jpg"]
    assert only(glob="*.jfif") == []  # glob narrows the image extensions, never widens them
    assert only(recursive=False) == ["B.PNG", "a.jpg", "link-in.jpg", "z.webp"]


def test_walk_explicit_arguments(tree, tmp_path):
    root, outside = tree
    notes = str(root / "notes.txt")
    args = [notes, str(outside), "-", str(root / "nope.jpg"), str(root / "pipe.jpg"), str(root / "self"),
            os.fsdecode(os.fsencode(str(root)) + b"/bad-\xff.jpg")]
    with deadline():
        got = list(walk(args, glob="a.*", recursive=False))
    assert [(p, e.kind if e else None) for p, e in got] == [
        (notes, None),  # named explicitly: tried whatever its extension
        (str(outside), None),
        ("-", None),
        (str(root / "nope.jpg"), "missing"),
        (str(root / "pipe.jpg"), "not-a-file"),
        (str(root / "self" / "a.jpg"), None),  # an explicit link to a folder is followed
        (str(root) + "/bad-\\xff.jpg", "bad-name"),
    ]
    refused(notes, "not-an-image", "text")


def test_walk_unreadable_folder(tree, monkeypatch):
    root, _ = tree
    real_scandir = os.scandir

    def deny(p="."):
        if os.fspath(p).endswith("deeper"):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_scandir(p)
    monkeypatch.setattr(images.os, "scandir", deny)
    got = [(os.path.relpath(p, root), e.kind if e else None) for p, e in walk([str(root)], glob="sub/*")]
    assert got == [("self", "skipped"), ("sub/c.jpg", None), ("sub/deeper", "unreadable"), ("sub/up", "skipped")]


def test_walk_does_not_recurse(tmp_path):
    path = tmp_path
    for _ in range(300):
        path = path / "d"
    path.mkdir(parents=True)
    (path / "x.png").write_bytes(b"")
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 100)  # a walk that recursed per folder level would fail here
    try:
        got = list(walk([str(tmp_path)]))
    finally:
        sys.setrecursionlimit(limit)
    assert len(got) == 1 and got[0][1] is None and got[0][0].endswith("/d/x.png")


def test_walk_stable_order(tree):
    root, _ = tree
    assert list(map(str, walk([str(root)]))) == list(map(str, walk([str(root)])))


# ------------------------------------------------------------------------------ preprocessing vs Hugging Face


def hf_pixel_values(ref, photo: str, config: str) -> np.ndarray:
    """HF's pixel_values, stored as (8-bit levels PNG, per-channel table): see make_preprocess_reference.py."""
    levels = np.asarray(Image.open(io.BytesIO(ref[f"levels__{photo}__{config}"].tobytes())))
    lut = ref[f"lut__{config}"]
    return np.stack([lut[c][levels[..., c]] for c in range(3)])


def reference_cases():
    with np.load(DATA / "preprocess-reference.npz") as z:
        return [tuple(k.split("__")[1:]) for k in z.files if k.startswith("levels__")]


def test_photos_decode_as_on_the_reference_machine(ref):
    for name, digest in zip(ref["photos"], ref["decoded_sha256"]):
        arr = np.asarray(open_image(PHOTOS / str(name)))
        got = hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()
        assert got == digest, (f"{name} decodes to other pixels with this Pillow/libjpeg than when the reference "
                               "was made; rerun tests/data/make_preprocess_reference.py")


@pytest.mark.parametrize("photo,config", reference_cases())
def test_preprocessing_equals_hugging_face(ref, photo, config):
    cfg = json.loads(str(ref["configs"]))[config]
    pre = Preprocessor.from_config(cfg)
    got = pre(open_image(PHOTOS / photo))
    want = hf_pixel_values(ref, photo, config)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == want.shape == (3, *pre.size)
    assert float(np.abs(got - want).max()) <= TOL


def test_reference_covers_the_four_required_configs(ref):
    cases = set(reference_cases())
    for config in ("vit224", "vit32", "deit", "convnext"):
        for photo in ref["photos"]:
            assert (str(photo), config) in cases


def test_tiny_vit_fixture():
    pre = Preprocessor.from_model(ModelDir(FIXTURES / "tiny-vit"))
    assert pre.size == (32, 32)
    out = pre(open_image(PHOTOS / "chelsea.jpg"))
    assert out.shape == (3, 32, 32) and -1 <= out.min() and out.max() <= 1


def test_tiny_vit_reference_pixel_values():
    skimage_data = pytest.importorskip("skimage.data")  # the full-size photos are not committed
    ref = np.load(FIXTURES / "tiny-vit" / "reference.npz")
    pre = Preprocessor.from_model(ModelDir(FIXTURES / "tiny-vit"))
    photos = {"chelsea": skimage_data.chelsea, "coffee": skimage_data.coffee, "rocket": skimage_data.rocket}
    for i, name in enumerate(ref["image_names"]):
        assert float(np.abs(pre(photos[str(name)]()) - ref["pixel_values"][i]).max()) <= TOL


def test_inputs_other_than_rgb_pil():
    pre = Preprocessor.from_config({"size": {"height": 8, "width": 8}, "image_mean": 0.5, "image_std": 0.5})
    arr = np.asarray(open_image(PHOTOS / "coffee.jpg"))
    assert np.array_equal(pre(arr), pre(Image.fromarray(arr)))
    grey = Image.fromarray(arr).convert("L")
    out = pre(grey)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    with pytest.raises(TypeError):
        pre(arr.astype(np.float32))


def test_from_model_falls_back_on_image_size(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "image_size": 48}))
    pre = Preprocessor.from_model(ModelDir(tmp_path))
    assert pre.size == (48, 48) and pre.resample == 2 and pre.mean.tolist() == [0.5] * 3
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(FatalError, match="image_size"):
        Preprocessor.from_model(ModelDir(tmp_path))


def test_without_fixed_size_the_image_size_is_checked(tmp_path):
    pre = Preprocessor.from_config({"do_resize": False, "image_mean": 0.5, "image_std": 0.5}, image_size=171)
    assert pre.size == (171, 171)
    with pytest.raises(ItemError) as info:
        pre(open_image(PHOTOS / "coffee.jpg"))
    assert info.value.kind == "bad-size"
    assert pre(Image.new("RGB", (171, 171))).shape == (3, 171, 171)


def test_extreme_aspect_ratio_refused_before_resizing():
    pre = Preprocessor.from_config({"image_processor_type": "CLIPImageProcessor"})
    with pytest.raises(ItemError) as info:
        pre(Image.new("RGB", (20000, 1)))  # shortest edge to 224 would make 4,480,000×224
    assert info.value.kind == "too-large" and "TFM_MAX_PIXELS" in str(info.value)


def test_convnext_warps_at_384_and_above():
    photo = open_image(PHOTOS / "coffee.jpg")
    convnext = Preprocessor.from_config({"image_processor_type": "ConvNextImageProcessor",
                                         "size": {"shortest_edge": 384}, "resample": 3})
    warp = Preprocessor.from_config({"image_processor_type": "ViTImageProcessor",
                                     "size": {"height": 384, "width": 384}, "resample": 3})
    assert convnext.size == (384, 384)
    assert np.array_equal(convnext(photo), warp(photo))


@pytest.mark.parametrize("cfg,words", [
    ({"size": {"height": 0, "width": 224}}, "size.height"),
    ({"size": "big"}, "size"),
    ({"size": {"longest_edge": 224}}, "size"),
    ({"size": 224, "resample": 9}, "resample"),
    ({"size": 224, "resample": "bicubic"}, "resample"),
    ({"size": 224, "image_mean": [1, 2], "image_std": 0.5}, "image_mean"),
    ({"size": 224, "image_mean": 0.5, "image_std": [0.5, 0, 0.5]}, "image_std"),
    ({"size": 224, "image_mean": 0.5, "image_std": 0.5, "rescale_factor": -1}, "rescale_factor"),
    ({"size": 224, "image_mean": 0.5, "image_std": 0.5, "do_pad": True}, "do_pad"),
    ({"size": 224, "image_mean": 0.5, "image_std": 0.5, "do_resize": "yes"}, "do_resize"),
    ({"size": 100000}, "size"),
    ({"size": 224, "do_normalize": True}, "image_mean"),
    ({"size": {"shortest_edge": 224}, "image_mean": 0.5, "image_std": 0.5}, "shortest edge"),
    ({"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 224}}, "height"),
    ({"image_processor_type": "ConvNextImageProcessor", "size": {"height": 224, "width": 224}}, "shortest_edge"),
    ({"image_processor_type": "ConvNextImageProcessor", "crop_pct": 0}, "crop_pct"),
    ({"do_resize": False, "image_mean": 0.5, "image_std": 0.5}, "image_size"),
    ({"image_processor_type": "DeiTImageProcessor", "crop_size": {"shortest_edge": 3}}, "crop_size"),
])
def test_nonsense_configs_are_fatal(cfg, words):
    with pytest.raises(FatalError) as info:
        Preprocessor.from_config(cfg)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_broken_preprocessor_json_is_fatal(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "preprocessor_config.json").write_text("[1, 2]")
    with pytest.raises(FatalError, match="JSON object"):
        Preprocessor.from_model(ModelDir(tmp_path))
    (tmp_path / "preprocessor_config.json").write_text("{size: 3")
    with pytest.raises(FatalError, match="not valid JSON"):
        Preprocessor.from_model(ModelDir(tmp_path))


def test_known_types_ignore_steps_they_do_not_run():
    # ViTImageProcessor has no centre crop: Hugging Face ignores these keys, and so does tfm
    pre = Preprocessor.from_config({"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 32},
                                    "do_center_crop": True, "crop_size": {"height": 8, "width": 8}, "do_pad": True})
    assert pre.size == (32, 32)
