"""Images in: safe opening, folder walking, and the preprocessing a model expects.

Opening (``open_image``) is defensive because images come from anywhere:

* only JPEG, PNG, GIF, BMP, WebP and TIFF are read.  Pillow is told so
  (``Image.open(formats=...)``), so the plugins for other formats -- EPS, which
  would run Ghostscript, among them -- never see the bytes;
* the pixel count in the header is checked against ``MAX_PIXELS`` before a
  single pixel is decoded, so a small file that declares 200 megapixels costs
  nothing;
* a file cut off part-way is reported as truncated, never filled with grey
  (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False);
* FIFOs, devices and folders are refused before any read, so nothing blocks.

The result is always an upright 8-bit RGB image:

* EXIF orientation is applied (``ImageOps.exif_transpose``, as Hugging Face's
  ``load_image`` does), so a 40x20 photo tagged "rotate 90" is 20x40;
* an animation gives its first frame;
* other modes go to RGB with ``Image.convert("RGB")`` -- what Hugging Face's
  ``convert_rgb`` does -- so pixels match what the model was trained on.  That
  means alpha is dropped, not composited: a transparent pixel shows the colour
  stored under it (for a palette image with a transparent index, the palette
  colour of that index; converting through RGBA first gives the same result).
  CMYK is converted without ICC profiles, like Pillow and Hugging Face do;
* where ``convert`` is wrong, tfm does better: 16-bit samples (modes ``I;16*``
  and ``I``) are scaled by 1/257 with rounding, so mid-grey 32768 becomes 128
  (Pillow clips them to 255); float images (``F``) holding integers 0..255 are
  taken as they are, those within 0..1 are scaled by 255; anything else is
  refused rather than guessed.

Walking (``walk``) yields image paths in a stable order and a reason for
everything it skips that looked like an image: see its docstring.

Preprocessing (``Preprocessor``) reproduces Hugging Face's (PIL-based, "slow")
image processors from ``preprocessor_config.json``: the same PIL resize on the
8-bit image, the same centre crop (zero padding when the image is smaller), the
same float64 rescale cast to float32 and the same float32 normalisation.  The
result equals ``processor(images)["pixel_values"]`` exactly (max abs
difference 0.0 in tests/data/preprocess-reference.npz).  Supported processor
types: ViT, DeiT, BEiT (and Data2VecVision, which uses it), ConvNeXt (with
``crop_pct``), CLIP, BiT, MobileNetV1/V2, MobileViT, LeViT, and any other type
whose config asks only for the generic steps with ``size`` as height/width.
Settings a known processor ignores are ignored (as Hugging Face does); a
setting tfm cannot honour is a fatal error, never silently skipped.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import warnings
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tfm.core.errors import FatalError, ItemError

__all__ = ["MAX_PIXELS", "ALLOWED_FORMATS", "IMAGE_EXTENSIONS", "open_image", "to_rgb", "Preprocessor", "walk",
           "display_path"]

DEFAULT_MAX_PIXELS = 40_000_000


def _max_pixels_from_env() -> int:
    raw = os.environ.get("TFM_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise FatalError(f"TFM_MAX_PIXELS must be a positive whole number of pixels, got {raw!r}")
    return value


MAX_PIXELS: int = _max_pixels_from_env()
ALLOWED_FORMATS: frozenset = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"})
IMAGE_EXTENSIONS: frozenset = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})

# Pillow's own bomb check runs inside Image.open and either warns or raises an
# error without the image; tfm checks the same header size itself, right after
# open, with its own limit and message.  Pillow's warnings (bad EXIF and the
# like) would be stray lines on stderr: the image is used or refused anyway.
Image.MAX_IMAGE_PIXELS = None
warnings.filterwarnings("ignore", module=r"PIL(\.|$)")

_PIL_FORMATS = sorted(ALLOWED_FORMATS)
_ALLOWED_LIST = ", ".join(_PIL_FORMATS)

# Leading bytes of the formats tfm reads: a file that starts like one of these
# but that Pillow cannot open is damaged, not "not an image".
_ALLOWED_MAGIC = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
]

# Well-known formats that tfm refuses, to say what the file is.
_REFUSED_MAGIC = [
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"SIMPLE  =", "FITS"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"icns", "ICNS"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"gimp xcf", "GIMP XCF"),
    (b"DDS ", "DDS"),
    (b"qoif", "QOI"),
    (b"\x01\xda", "SGI"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
]


# ------------------------------------------------------------------------------ opening


def display_path(path: str | bytes | os.PathLike) -> str:
    """A path as printable UTF-8: bytes that are not valid UTF-8 shown as \\xNN."""
    raw = os.fspath(path)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "backslashreplace")
    try:
        raw.encode("utf-8")
        return raw
    except UnicodeEncodeError:  # names decoded with surrogateescape
        return os.fsencode(raw).decode("utf-8", "backslashreplace")


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_error(e: OSError) -> ItemError:
    reason = e.strerror or type(e).__name__
    if e.errno == errno.ENOENT:
        return ItemError("no such file", "missing")
    if e.errno in (errno.EACCES, errno.EPERM):
        return ItemError("cannot read the file: permission denied", "unreadable")
    if e.errno == errno.ELOOP:
        return ItemError("cannot read the file: a loop of symbolic links", "unreadable")
    return ItemError(f"cannot read the file: {reason}", "unreadable")


def _sniff(head: bytes) -> tuple[str | None, str | None]:
    """(allowed format, refused format) that the leading bytes look like."""
    for magic, name in _ALLOWED_MAGIC:
        if head.startswith(magic):
            return name, None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", None
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            return None, name
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return None, "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
            return None, "HEIF/HEIC"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n":
        return None, "PNM"
    text = head.lstrip()
    if text[:4].lower() == b"<svg" or (text.startswith(b"<?xml") and b"<svg" in head.lower()):
        return None, "SVG"
    return None, None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > len(head) - 4  # a character cut at the end of the sample
    return True


def _unidentified(f, size: int) -> ItemError:
    f.seek(0)
    head = f.read(512)
    allowed, refused = _sniff(head)
    if refused:
        return ItemError(f"{refused} file refused: tfm reads only {_ALLOWED_LIST} images", "format-refused")
    if allowed:
        if allowed not in Image.OPEN:
            return ItemError(f"this Pillow was built without {allowed} support", "unsupported")
        return ItemError(f"damaged or cut-off {allowed} file: its header cannot be read", "corrupt")
    if _looks_like_text(head):
        return ItemError(f"not an image: the file holds text (tfm reads {_ALLOWED_LIST})", "not-an-image")
    return ItemError(f"not an image: unrecognised content (tfm reads {_ALLOWED_LIST})", "not-an-image")


def _declared_riff_size(f) -> int | None:
    f.seek(0)
    head = f.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return int.from_bytes(head[4:8], "little") + 8
    return None


def _decode_error(e: Exception, fmt: str, f, size: int) -> ItemError:
    """A Pillow failure while opening or decoding a file of an allowed format."""
    text = str(e)
    lowered = text.lower()
    if isinstance(e, EOFError) or any(s in lowered for s in ("truncated", "broken data stream", "end of file",
                                                               "premature end", "unexpected end")):
        return ItemError(f"truncated {fmt} file: the image data ends early", "truncated")
    declared = _declared_riff_size(f) if fmt == "WEBP" else None
    if declared is not None and declared > size:
        return ItemError(f"truncated WEBP file: {size} of {declared} bytes", "truncated")
    detail = text.splitlines()[0] if text.strip() else type(e).__name__
    return ItemError(f"damaged {fmt} file: {detail}", "corrupt")


def _check_pixels(width: int, height: int, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise ItemError(f"the header declares an empty image ({width}×{height})", "corrupt")
    pixels = width * height
    if pixels > limit:
        raise ItemError(f"{width}×{height} = {pixels:,} pixels, over the limit of {limit:,} (TFM_MAX_PIXELS)",
                        "too-large")


def open_image(path: str | Path, *, max_pixels: int | None = None) -> "Image.Image":
    """RGB image, EXIF orientation applied, first frame of animations; raises ItemError(kind=...).

    Kinds: missing, unreadable, not-a-file, not-an-image, format-refused,
    too-large, truncated, corrupt, unsupported, unsupported-mode.
    ``max_pixels`` defaults to the module's MAX_PIXELS (env TFM_MAX_PIXELS).
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise _os_error(e) from None
    try:
        info = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise _os_error(e) from None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ItemError(f"not a regular file: {_file_kind(info.st_mode)}", "not-a-file")
    if info.st_size == 0:
        os.close(fd)
        raise ItemError("not an image: the file is empty (0 bytes)", "not-an-image")
    with os.fdopen(fd, "rb") as f:
        return _decode(f, info.st_size, limit)


def _decode(f, size: int, limit: int) -> "Image.Image":
    # Set on every call: another library in the process may have changed them.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    Image.MAX_IMAGE_PIXELS = None
    try:
        img = Image.open(f, formats=_PIL_FORMATS)
    except UnidentifiedImageError:
        raise _unidentified(f, size) from None
    except MemoryError:
        raise ItemError("out of memory reading the image header", "too-large") from None
    except OSError as e:
        if e.errno is not None:  # a real read error, not a decoder complaint
            raise _os_error(e) from None
        raise _decode_error(e, _sniff(_head(f))[0] or "image", f, size) from None
    except Exception as e:  # Pillow raises many types on crafted files
        raise _decode_error(e, _sniff(_head(f))[0] or "image", f, size) from None
    fmt = "JPEG" if img.format == "MPO" else img.format
    if fmt not in ALLOWED_FORMATS:  # cannot happen with formats=...; kept as a guard
        raise ItemError(f"{img.format} file refused: tfm reads only {_ALLOWED_LIST} images", "format-refused")
    _check_pixels(*img.size, limit)  # header size, before anything is decoded
    try:
        if img.tell() != 0:  # Pillow opens at the first frame; n_frames would scan the whole file
            img.seek(0)
        img.load()
    except MemoryError:
        raise ItemError("out of memory decoding the image", "too-large") from None
    except OSError as e:
        if e.errno is not None:
            raise _os_error(e) from None
        raise _decode_error(e, fmt, f, size) from None
    except Exception as e:
        raise _decode_error(e, fmt, f, size) from None
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception as e:
        raise ItemError(f"damaged EXIF orientation data in the {fmt} file ({type(e).__name__})", "corrupt") from None
    return to_rgb(upright)


def _head(f) -> bytes:
    try:
        f.seek(0)
        return f.read(32)
    except (OSError, ValueError):
        return b""


def to_rgb(img: "Image.Image") -> "Image.Image":
    """8-bit RGB, predictably, from any Pillow mode (see the module docstring)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        values = np.asarray(img)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise ItemError(f"32-bit integer image with values {low}..{high}, outside 0..65535: "
                            "cannot be converted to RGB predictably", "unsupported-mode")
        grey = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 65535 -> 255, 32768 -> 128
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ItemError("floating-point image holds NaN or Inf", "unsupported-mode")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0 and high <= 255 and np.array_equal(values, np.round(values)):
            grey = values.astype(np.uint8)
        elif low >= 0 and high <= 1:
            grey = np.rint(values * 255).astype(np.uint8)
        else:
            raise ItemError(f"floating-point image with values {low:g}..{high:g}, neither 0..1 nor 0..255: "
                            "cannot be converted to RGB predictably", "unsupported-mode")
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ItemError(f"image mode {mode} cannot be converted to RGB ({e})", "unsupported-mode") from None


# ------------------------------------------------------------------------------ walking


def _is_image_name(name: str, relpath: str, glob: str | None) -> bool:
    if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
        return False
    return glob is None or fnmatchcase(relpath, glob) or fnmatchcase(name, glob)


def _valid_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _bad_name(path: str, what: str = "file") -> tuple[str, ItemError]:
    return display_path(path), ItemError(
        f"{what} name is not valid UTF-8 (shown with \\xNN escapes): skipped; rename it to use it", "bad-name")


def walk(inputs: list[str], glob: str | None = None, recursive: bool = True) -> Iterator[tuple[str, ItemError | None]]:
    """Image paths in a stable order: files as given, folders walked (sorted), '-' is not handled here.
    Yields (path, None) for candidates and (path, ItemError) for things skipped with a reason.

    * A file named as an argument is always a candidate, whatever its name; a
      symbolic link given as an argument is followed.  '-' is passed through
      as it is (callers read stdin for it).
    * In a folder, candidates are files whose extension is one of
      IMAGE_EXTENSIONS (any case) and, with ``glob``, whose path relative to
      the folder or whose name matches it (fnmatch, case-sensitive; ``*``
      also matches ``/``).  Other files, and hidden files and folders (name
      starting with '.'), are passed over silently.  Entries are visited in
      byte order of their names, depth first; ``recursive=False`` stays in
      the folder itself.
    * Reported and skipped, the walk going on: a symbolic link to a file
      outside the walked folder ("outside"); a symbolic link to a folder (never
      followed, so a link pointing up cannot loop; "skipped"); a folder seen
      before through a mount ("loop"); a FIFO, device or socket -- never opened
      ("not-a-file"); a dangling link ("missing"); a folder that cannot be
      listed ("unreadable"); a name that is not valid UTF-8 ("bad-name", shown
      with \\xNN escapes, since the path could not be written to a UTF-8
      record).  Only names that look like images are reported (a FIFO called
      ``pipe`` is passed over, one called ``pipe.jpg`` is reported); links
      to folders are always reported.
    * Unreadable files are not detected here: open_image reports them.
    """
    for item in inputs:
        item = os.fspath(item)
        if item == "-":
            yield item, None
            continue
        if not _valid_utf8(item):
            yield _bad_name(item)
            continue
        try:
            info = os.stat(item)
        except OSError as e:
            if e.errno == errno.ENOENT and os.path.islink(item):
                yield item, ItemError("broken symbolic link: its target does not exist", "missing")
            elif e.errno == errno.ENOENT:
                yield item, ItemError("no such file or folder", "missing")
            else:
                yield item, _os_error(e)
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk_folder(item, glob, recursive)
        elif stat.S_ISREG(info.st_mode):
            yield item, None
        else:
            yield item, ItemError(f"not a regular file: {_file_kind(info.st_mode)}", "not-a-file")


def _walk_folder(top: str, glob: str | None, recursive: bool) -> Iterator[tuple[str, ItemError | None]]:
    root_real = os.path.realpath(top)
    seen: set[tuple[int, int]] = set()
    # An explicit stack, not recursion: a folder tree 10,000 levels deep must not blow the stack.
    stack: list[Iterator] = []

    def enter(path: str, rel: str) -> Iterator[tuple[str, ItemError | None]]:
        try:
            info = os.stat(path)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                yield path, ItemError("folder already visited (a loop through a mount): skipped", "loop")
                return
            seen.add(key)
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as e:
            reason = "permission denied" if e.errno in (errno.EACCES, errno.EPERM) else (e.strerror or str(e))
            yield path, ItemError(f"cannot list the folder: {reason}", "unreadable")
            return
        stack.append(iter([(e, rel) for e in entries]))

    yield from enter(top, "")
    while stack:
        try:
            entry, rel = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        name = entry.name
        if name.startswith("."):
            continue
        path = entry.path
        relpath = rel + name
        try:
            is_link = entry.is_symlink()
            is_dir = not is_link and entry.is_dir(follow_symlinks=False)
        except OSError as e:
            yield display_path(path), _os_error(e)
            continue
        if is_dir:
            if recursive:
                if not _valid_utf8(path):
                    yield _bad_name(path, "folder")
                    continue
                yield from enter(path, relpath + "/")
            continue
        if is_link:
            try:
                target = os.stat(path)
            except OSError as e:
                if _is_image_name(name, relpath, glob):
                    if not _valid_utf8(path):
                        yield _bad_name(path)
                    elif e.errno == errno.ENOENT:
                        yield path, ItemError("broken symbolic link: its target does not exist", "missing")
                    else:
                        yield path, _os_error(e)
                continue
            if stat.S_ISDIR(target.st_mode):
                if recursive:
                    yield display_path(path), ItemError("symbolic link to a folder: not followed", "skipped")
                continue
            if not _is_image_name(name, relpath, glob):
                continue
            if not _valid_utf8(path):
                yield _bad_name(path)
            elif not stat.S_ISREG(target.st_mode):
                where = display_path(os.path.realpath(path))
                yield path, ItemError(f"symbolic link to {where}, {_file_kind(target.st_mode)}, "
                                      "not a regular file: skipped", "not-a-file")
            elif not _inside(os.path.realpath(path), root_real):
                yield path, ItemError("symbolic link to a file outside the folder: skipped", "outside")
            else:
                yield path, None
            continue
        if not _is_image_name(name, relpath, glob):
            continue
        if not _valid_utf8(path):
            yield _bad_name(path)
            continue
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as e:
            yield path, _os_error(e)
            continue
        if stat.S_ISREG(mode):
            yield path, None
        else:
            yield path, ItemError(f"not a regular file: {_file_kind(mode)}: skipped", "not-a-file")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# ------------------------------------------------------------------------------ preprocessing

IMAGENET_STANDARD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
IMAGENET_DEFAULT = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
OPENAI_CLIP = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])

MAX_SIDE = 4096  # pixel_values larger than this on a side are a config error, not a real model
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

# Per Hugging Face processor class (the name without ImageProcessor/FeatureExtractor):
# its __init__ defaults, how it reads a bare-int size, how it resizes to a
# shortest edge, and which steps its preprocess() runs -- a step it does not
# run is ignored even when the config sets it, as Hugging Face does.
_WARP_STEPS = ("resize", "rescale", "normalize")
_CROP_STEPS = ("resize", "center_crop", "rescale", "normalize")
_TYPES: dict[str, dict[str, Any]] = {
    "ViT": dict(size={"height": 224, "width": 224}, resample=2, square=True, steps=_WARP_STEPS,
                mean_std=IMAGENET_STANDARD),
    "DeiT": dict(size={"height": 256, "width": 256}, resample=3, square=True, steps=_CROP_STEPS,
                 crop_size={"height": 224, "width": 224}, do_center_crop=True, mean_std=IMAGENET_STANDARD),
    "Beit": dict(size={"height": 256, "width": 256}, resample=3, square=True, steps=_CROP_STEPS,
                 crop_size={"height": 224, "width": 224}, do_center_crop=True, mean_std=IMAGENET_STANDARD),
    "ConvNext": dict(size={"shortest_edge": 384}, resample=2, square=False, shortest="convnext",
                     steps=_WARP_STEPS, crop_pct=224 / 256, mean_std=IMAGENET_STANDARD),
    "CLIP": dict(size={"shortest_edge": 224}, resample=3, square=False, shortest="keep-aspect", steps=_CROP_STEPS,
                 crop_size={"height": 224, "width": 224}, do_center_crop=True, mean_std=OPENAI_CLIP),
    "Bit": dict(size={"shortest_edge": 224}, resample=3, square=False, shortest="keep-aspect", steps=_CROP_STEPS,
                crop_size={"height": 224, "width": 224}, do_center_crop=True, mean_std=OPENAI_CLIP),
    "MobileNetV1": dict(size={"shortest_edge": 256}, resample=2, square=False, shortest="keep-aspect",
                        steps=_CROP_STEPS, crop_size={"height": 224, "width": 224}, do_center_crop=True,
                        mean_std=IMAGENET_STANDARD),
    "MobileNetV2": dict(size={"shortest_edge": 256}, resample=2, square=False, shortest="keep-aspect",
                        steps=_CROP_STEPS, crop_size={"height": 224, "width": 224}, do_center_crop=True,
                        mean_std=IMAGENET_STANDARD),
    "MobileViT": dict(size={"shortest_edge": 224}, resample=2, square=False, shortest="keep-aspect",
                      steps=("resize", "rescale", "center_crop", "flip_channel_order"),
                      crop_size={"height": 256, "width": 256}, do_center_crop=True, do_flip_channel_order=True,
                      do_normalize=False, mean_std=IMAGENET_STANDARD),
    "Levit": dict(size={"shortest_edge": 224}, resample=3, square=False, shortest="levit", steps=_CROP_STEPS,
                  crop_size={"height": 224, "width": 224}, do_center_crop=True, mean_std=IMAGENET_DEFAULT),
}
_TYPES["Data2VecVision"] = _TYPES["Beit"]
_GENERIC_STEPS = ("resize", "center_crop", "rescale", "normalize", "flip_channel_order")
_KNOWN_FLAGS = {"do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb",
                "do_flip_channel_order", "do_reduce_labels"}


def _processor_kind(cfg: dict) -> tuple[str, str]:
    """(the class name as written, its key in _TYPES or '')."""
    name = cfg.get("image_processor_type") or cfg.get("feature_extractor_type") or ""
    if not isinstance(name, str):
        return str(name), ""
    base = name
    for suffix in ("ImageProcessorFast", "ImageProcessor", "FeatureExtractor"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    for key in _TYPES:
        if key.lower() == base.lower():
            return name, key
    return name, ""


class Preprocessor:
    """A model's image preprocessing: PIL/NumPy image -> float32 (C, H, W) pixel_values.

    Built from a Hugging Face ``preprocessor_config.json``; see the module
    docstring for what is supported and how exactly it matches Hugging Face.
    """

    size: tuple[int, int]

    def __init__(self, *, kind: str, do_resize: bool, resize_to: tuple[str, Any], resample: int,
                 crop: tuple[int, int] | None, rescale: float | None, mean: list[float] | None,
                 std: list[float] | None, flip_channel_order: bool, size: tuple[int, int], fixed: bool):
        self.kind = kind
        self.do_resize = do_resize
        self.resize_to = resize_to  # ("warp", (h, w)) | ("keep-aspect", edge) | ("convnext", (edge, crop_pct))
        self.resample = resample
        self.crop = crop
        self.rescale = rescale
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        self.flip_channel_order = flip_channel_order
        self.size = size
        self._fixed = fixed  # False: size comes from config.json's image_size and is checked per image

    def __repr__(self) -> str:
        parts = [f"size={self.size[0]}x{self.size[1]}"]
        if self.do_resize:
            how, arg = self.resize_to
            parts.append(f"resize={how}:{arg} {RESAMPLE_NAMES.get(self.resample, self.resample)}")
        if self.crop:
            parts.append(f"crop={self.crop[0]}x{self.crop[1]}")
        if self.rescale is not None:
            parts.append(f"rescale={self.rescale:g}")
        if self.mean is not None:
            parts.append(f"mean={self.mean.tolist()} std={self.std.tolist()}")
        if self.flip_channel_order:
            parts.append("BGR")
        return f"Preprocessor({self.kind or 'generic'}, {', '.join(parts)})"

    # ---------------------------------------------------------------- building

    @classmethod
    def from_model(cls, model_dir) -> "Preprocessor":
        """From the folder's preprocessor_config.json (+ config.json image_size fallback); FatalError on nonsense."""
        source = f"model {model_dir.name}: preprocessor_config.json"
        cfg = model_dir.read_json("preprocessor_config.json")
        image_size = None
        if (model_dir.path / "config.json").is_file():
            image_size = model_dir.config.get("image_size")
        if not cfg:
            if image_size is None:
                raise FatalError(f"model {model_dir.name}: no preprocessor_config.json, and config.json has no "
                                 "image_size to fall back on")
            # What ViTImageProcessor does with nothing but the size.
            cfg = {"image_processor_type": "ViTImageProcessor", "size": _size_from_image_size(image_size, source)}
            source = f"model {model_dir.name}: config.json image_size"
        return cls.from_config(cfg, image_size=image_size, source=source)

    @classmethod
    def from_config(cls, cfg: dict, image_size: int | None = None, *, source: str = "preprocessor config") -> "Preprocessor":
        """From a preprocessor_config.json dict; ``image_size`` (config.json) fixes the size when cfg does not."""
        if not isinstance(cfg, dict):
            raise FatalError(f"{source}: expected a JSON object, got {type(cfg).__name__}")
        name, kind = _processor_kind(cfg)
        spec = _TYPES.get(kind, {})
        steps = spec.get("steps", _GENERIC_STEPS)

        def bool_of(key: str, default: bool) -> bool:
            if key not in cfg:
                return default
            value = cfg[key]
            if value is None:  # Hugging Face treats a null flag as off
                return False
            if not isinstance(value, bool):
                raise FatalError(f"{source}: {key} must be true or false, got {value!r}")
            return value

        if not kind:
            for key, value in cfg.items():
                if key.startswith("do_") and key not in _KNOWN_FLAGS and value not in (None, False):
                    raise FatalError(f"{source}: {key} is set, and tfm does not implement it"
                                     f"{f' for {name}' if name else ''}; refusing rather than preprocessing wrongly")

        do_resize = "resize" in steps and bool_of("do_resize", True)
        do_crop = "center_crop" in steps and bool_of("do_center_crop", spec.get("do_center_crop", False))
        do_rescale = "rescale" in steps and bool_of("do_rescale", True)
        do_normalize = "normalize" in steps and bool_of("do_normalize", spec.get("do_normalize", True))
        do_flip = "flip_channel_order" in steps and bool_of("do_flip_channel_order",
                                                            spec.get("do_flip_channel_order", False))

        resample = cfg["resample"] if "resample" in cfg else spec.get("resample", 2)
        if resample is None and not do_resize:
            resample = 2  # unused
        if isinstance(resample, bool) or not isinstance(resample, int) or resample not in RESAMPLE_NAMES:
            raise FatalError(f"{source}: resample = {resample!r}, expected a PIL filter number 0..5")

        fixed = True
        out: tuple[int, int] | None = None
        resize_to: tuple[str, Any] = ("none", None)
        if do_resize:
            size = cfg.get("size")
            if size is None:
                size = spec.get("size")
            if size is None and image_size is not None:
                size = _size_from_image_size(image_size, source)
            if size is None:
                raise FatalError(f"{source}: do_resize is set but there is no size (and no image_size in config.json)")
            size = _size_dict(size, square=spec.get("square", True), source=source, key="size")
            shortest = spec.get("shortest")
            if "height" in size:
                if shortest == "convnext":
                    raise FatalError(f"{source}: {name} needs size {{\"shortest_edge\": N}}, got {size}")
                resize_to = ("warp", (size["height"], size["width"]))
                out = resize_to[1]
            elif kind in ("ViT", "DeiT", "Beit", "Data2VecVision"):
                raise FatalError(f"{source}: {name} needs size {{\"height\": H, \"width\": W}}, got {size}")
            elif shortest is None:
                raise FatalError(f"{source}: size {size} (resize to a shortest edge) has no fixed meaning for "
                                 f"{name or 'an unnamed processor'}; tfm knows it for "
                                 "ConvNext, CLIP, Bit, MobileNetV1/V2, MobileViT and Levit")
            elif shortest == "convnext":
                crop_pct = cfg.get("crop_pct")
                if crop_pct is None:
                    crop_pct = spec["crop_pct"]
                if (isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float))
                        or not math.isfinite(crop_pct) or not 0.05 <= crop_pct <= 2):
                    raise FatalError(f"{source}: crop_pct = {crop_pct!r}, expected a fraction like 0.875")
                edge = size["shortest_edge"]
                resize_to = ("convnext", (edge, float(crop_pct)))
                out = (edge, edge)
                if edge < 384 and int(edge / crop_pct) > MAX_SIDE:
                    raise FatalError(f"{source}: shortest_edge / crop_pct = {edge / crop_pct:g} is too large")
            else:
                edge = size["shortest_edge"]
                if shortest == "levit":
                    edge = int((256 / 224) * edge)
                resize_to = (shortest, edge)
                out = None  # depends on the image's aspect ratio
        crop = None
        if do_crop:
            crop_size = cfg.get("crop_size")
            if crop_size is None:
                crop_size = spec.get("crop_size")
            if crop_size is None:
                raise FatalError(f"{source}: do_center_crop is set but there is no crop_size")
            crop_dict = _size_dict(crop_size, square=True, source=source, key="crop_size")
            if "height" not in crop_dict:
                raise FatalError(f"{source}: crop_size must be {{\"height\": H, \"width\": W}}, got {crop_size!r}")
            crop = (crop_dict["height"], crop_dict["width"])
            out = crop
        if out is None:
            if image_size is None:
                raise FatalError(f"{source}: the settings do not fix the size of pixel_values (no resize to a "
                                 "fixed size, no centre crop) and config.json has no image_size")
            out = _hw(_size_from_image_size(image_size, source))
            fixed = False

        rescale = None
        if do_rescale:
            factor = cfg.get("rescale_factor", 1 / 255)
            if (isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor)
                    or factor <= 0):
                raise FatalError(f"{source}: rescale_factor = {factor!r}, expected a positive number like 1/255")
            rescale = float(factor)
        mean = std = None
        if do_normalize:
            default_mean, default_std = spec.get("mean_std", (None, None))
            mean = _channels(cfg.get("image_mean"), default_mean, "image_mean", source)
            std = _channels(cfg.get("image_std"), default_std, "image_std", source)
            if any(s <= 0 for s in std):
                raise FatalError(f"{source}: image_std = {std}, every entry must be > 0")
        return cls(kind=name, do_resize=do_resize, resize_to=resize_to, resample=resample, crop=crop,
                   rescale=rescale, mean=mean, std=std, flip_channel_order=do_flip, size=out, fixed=fixed)

    # ---------------------------------------------------------------- running

    def __call__(self, img) -> np.ndarray:
        """float32 (C, H, W) pixel_values, exactly as Hugging Face's processor computes them."""
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise TypeError(f"expected a uint8 (H, W, 3) RGB array, got {img.dtype} {img.shape}")
            img = Image.fromarray(img, "RGB")
        elif not isinstance(img, Image.Image):
            raise TypeError(f"expected a PIL image or a uint8 (H, W, 3) array, got {type(img).__name__}")
        if img.mode != "RGB":
            img = to_rgb(img)
        if self.do_resize:
            img = self._resize(img)
        pixels = np.asarray(img)  # (H, W, 3) uint8
        if self.do_resize and self.resize_to[0] == "convnext" and self.resize_to[1][0] < 384:
            edge = self.resize_to[1][0]
            pixels = center_crop(pixels, (edge, edge))
        if self.crop is not None:
            pixels = center_crop(pixels, self.crop)
        if self.rescale is not None:
            # Hugging Face multiplies in float64 and casts the product to float32.
            x = (pixels.astype(np.float64) * self.rescale).astype(np.float32)
        else:
            x = pixels.astype(np.float32)
        if self.mean is not None:
            x = (x - self.mean) / self.std  # float32 throughout, as Hugging Face's normalize
        if self.flip_channel_order:
            x = x[:, :, ::-1]
        out = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)  # (C, H, W)
        if out.shape[1:] != self.size:
            raise ItemError(f"preprocessing gives {out.shape[1]}×{out.shape[2]} pixels for this image, "
                            f"the model takes {self.size[0]}×{self.size[1]}", "bad-size")
        return out

    def _resize(self, img: "Image.Image") -> "Image.Image":
        how, arg = self.resize_to
        width, height = img.size
        if how == "warp":
            target = arg
        elif how == "convnext":
            edge, crop_pct = arg
            target = shortest_edge_size(height, width, int(edge / crop_pct)) if edge < 384 else (edge, edge)
        else:
            target = shortest_edge_size(height, width, arg)
        th, tw = target
        if th * tw > MAX_PIXELS or th < 1 or tw < 1:
            raise ItemError(f"resizing this {width}×{height} image as the model asks gives {tw}×{th} "
                            f"= {tw * th:,} pixels, over the limit of {MAX_PIXELS:,} (TFM_MAX_PIXELS)", "too-large")
        return img.resize((tw, th), resample=self.resample, reducing_gap=None)


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """(H, W) with the shorter side ``edge`` and the aspect ratio kept (HF get_resize_output_image_size)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = edge, int(edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) centre crop to ``size``, zero-padded where the image is smaller (HF center_crop)."""
    height, width = pixels.shape[:2]
    crop_h, crop_w = int(size[0]), int(size[1])
    top = (height - crop_h) // 2
    left = (width - crop_w) // 2
    bottom, right = top + crop_h, left + crop_w
    if top >= 0 and left >= 0 and bottom <= height and right <= width:
        return pixels[top:bottom, left:right]
    new_h, new_w = max(crop_h, height), max(crop_w, width)
    padded = np.zeros((new_h, new_w) + pixels.shape[2:], dtype=pixels.dtype)
    top_pad = math.ceil((new_h - height) / 2)
    left_pad = math.ceil((new_w - width) / 2)
    padded[top_pad:top_pad + height, left_pad:left_pad + width] = pixels
    top, bottom, left, right = top + top_pad, bottom + top_pad, left + left_pad, right + left_pad
    return padded[max(0, top):min(new_h, bottom), max(0, left):min(new_w, right)]


def _side(value: Any, what: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise FatalError(f"{source}: {what} = {value!r}, expected a whole number of pixels 1..{MAX_SIDE}")
    return value


def _size_dict(size: Any, *, square: bool, source: str, key: str) -> dict[str, int]:
    """Hugging Face's get_size_dict: int, [h, w] or a dict, checked."""
    if isinstance(size, int) and not isinstance(size, bool):
        side = _side(size, key, source)
        return {"height": side, "width": side} if square else {"shortest_edge": side}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": _side(size[0], key, source), "width": _side(size[1], key, source)}
    if isinstance(size, dict):
        keys = set(size)
        if keys == {"height", "width"}:
            return {"height": _side(size["height"], f"{key}.height", source),
                    "width": _side(size["width"], f"{key}.width", source)}
        if keys == {"shortest_edge"}:
            return {"shortest_edge": _side(size["shortest_edge"], f"{key}.shortest_edge", source)}
    raise FatalError(f"{source}: {key} = {size!r}, expected {{\"height\": H, \"width\": W}} or "
                     "{\"shortest_edge\": N}")


def _size_from_image_size(image_size: Any, source: str) -> dict[str, int]:
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2:
        return {"height": _side(image_size[0], "image_size", source),
                "width": _side(image_size[1], "image_size", source)}
    side = _side(image_size, "image_size", source)
    return {"height": side, "width": side}


def _hw(size: dict[str, int]) -> tuple[int, int]:
    return size["height"], size["width"]


def _channels(value: Any, default: list[float] | None, key: str, source: str) -> list[float]:
    if value is None:
        value = default
    if value is None:
        raise FatalError(f"{source}: do_normalize is set but {key} is missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)):
        raise FatalError(f"{source}: {key} = {value!r}, expected 3 numbers (R, G, B)")
    return [float(v) for v in value]
