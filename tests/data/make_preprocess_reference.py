"""Make tests/data/photos/ and tests/data/preprocess-reference.npz.

    python tests/data/make_preprocess_reference.py

Needs scikit-image (the photos), transformers 4.57.x (its PIL-based image
processors and load_image), numpy and Pillow -- at generation time only; torch is
not used (the processors return NumPy arrays).  tests/test_images.py needs none of
them: it reads the committed files.

What it writes:

* photos/: four public-domain photos from scikit-image's data module, resized
  (Pillow LANCZOS) to 256 px on the long side; three JPEG (quality 90), one PNG;
* preprocess-reference.npz:
  - ``configs``: a JSON string, {name: preprocessor_config dict};
  - ``photos``: the photo file names; ``decoded_sha256``: sha256 of each photo as
    decoded (Pillow, EXIF applied, RGB; shape then bytes), so a test can tell a
    JPEG decoder difference apart from a preprocessing difference;
  - Hugging Face's ``pixel_values`` (C, H, W) float32 from
    ``<Class>.from_dict(config)(load_image(path), return_tensors="np")``, stored
    losslessly in factored form to keep the file small (float32 photos compress
    badly): ``levels__<photo>__<config>`` is a PNG (uint8 bytes) of the 8-bit
    image the processor resized and cropped (its output channel order), and
    ``lut__<config>`` (3, 256) float32 is what the processor's own rescale and
    normalise (and channel flip) make of each 8-bit level, so
    ``pixel_values[c] = lut[c][levels[..., c]]``.  The script checks that this
    gives back Hugging Face's array bit for bit before it writes anything;
  - ``syn__<case>__file``: bytes (uint8) of a small synthetic image file, and
    ``syn__<case>__hf``: ``transformers.image_utils.load_image`` of it as uint8
    (H, W, 3); ``syn__<case>__tfm`` where tfm deliberately differs (16-bit grey:
    Pillow's convert clips 32768 to 255, tfm scales it to 128).

It also checks tfm.core.images.Preprocessor against every reference and against
tests/fixtures/tiny-vit/reference.npz (made from the full-size scikit-image photos)
and prints the largest differences.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTOS = HERE / "photos"
OUT = HERE / "preprocess-reference.npz"
LONG_SIDE = 256

# (file name, skimage.data function, licence note)
PHOTO_SOURCES = [
    ("chelsea.jpg", "chelsea", "Stefan van der Walt, public domain (CC0)"),
    ("coffee.jpg", "coffee", "Rachel Michetti, public domain (CC0)"),
    ("astronaut.jpg", "astronaut", "NASA (astronaut Eileen Collins), public domain"),
    ("rocket.png", "rocket", "SpaceX (DSCOVR launch on Falcon 9), released into the public domain"),
]

CONFIGS = {
    # (a) ViT-Base style: 224x224 warp, bilinear, mean/std 0.5
    "vit224": {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 224, "width": 224},
               "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
               "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    # (b) like tests/fixtures/tiny-vit/preprocessor_config.json
    "vit32": json.loads((HERE.parent / "fixtures" / "tiny-vit" / "preprocessor_config.json").read_text()),
    # (c) DeiT style: 256x256 bicubic, centre crop 224, ImageNet mean/std
    "deit": {"image_processor_type": "DeiTImageProcessor", "do_resize": True, "size": {"height": 256, "width": 256},
             "resample": 3, "do_center_crop": True, "crop_size": {"height": 224, "width": 224}, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
             "image_std": [0.229, 0.224, 0.225]},
    # (d) ConvNeXt style: shortest edge 224 / crop_pct 0.875 = 256, bicubic, centre crop 224
    "convnext": {"image_processor_type": "ConvNextImageProcessor", "do_resize": True, "size": {"shortest_edge": 224},
                 "crop_pct": 0.875, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
                 "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
    # Small extras, one per remaining code path:
    # CLIP: shortest edge keeping the aspect ratio, then centre crop (defaults for mean/std)
    "clip64": {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 64},
               "crop_size": {"height": 56, "width": 56}},
    # DeiT whose crop is larger than the resized image: Hugging Face pads with zeros
    "deit_pad": {"image_processor_type": "DeiTImageProcessor", "size": {"height": 24, "width": 40}, "resample": 0,
                 "crop_size": {"height": 32, "width": 36}},
    # an old feature-extractor config: bare-int size, lanczos, no rescale key
    "legacy_vit": {"feature_extractor_type": "ViTFeatureExtractor", "do_resize": True, "size": 40, "resample": 1,
                   "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
    # MobileViT: no normalisation, rescale, crop, RGB -> BGR
    "mobilevit": {"image_processor_type": "MobileViTImageProcessor", "size": {"shortest_edge": 40},
                  "crop_size": {"height": 32, "width": 32}},
    # LeViT: shortest edge scaled by 256/224
    "levit": {"image_processor_type": "LevitImageProcessor", "size": {"shortest_edge": 42},
              "crop_size": {"height": 40, "width": 40}},
    # ConvNeXt at >= 384: plain warp to a square (the largest is kept to one photo, see ONLY)
    "convnext384": {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 384},
                    "resample": 2},
}
ONLY = {"convnext384": ["rocket.png"]}  # 384x384x3 float32 is big: one photo is enough


def hf_processor(cfg: dict):
    import transformers

    name = cfg.get("image_processor_type") or cfg["feature_extractor_type"].replace("FeatureExtractor",
                                                                                   "ImageProcessor")
    return getattr(transformers, name).from_dict(cfg)


def make_photos() -> None:
    import skimage.data

    PHOTOS.mkdir(exist_ok=True)
    for filename, func, _ in PHOTO_SOURCES:
        img = Image.fromarray(getattr(skimage.data, func)()).convert("RGB")
        scale = LONG_SIDE / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        if filename.endswith(".jpg"):
            img.save(PHOTOS / filename, "JPEG", quality=90)
        else:
            img.save(PHOTOS / filename, "PNG", optimize=True)


def hf_levels_and_lut(cfg: dict, img: Image.Image, pv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The processor's 8-bit intermediate for ``img`` and its per-channel level -> value table."""
    proc = hf_processor({**cfg, "do_rescale": False, "do_normalize": False})
    levels = proc(img, return_tensors="np")["pixel_values"][0]
    assert levels.dtype == np.uint8, levels.dtype  # nothing but resize/crop/flip ran
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3): every level
    full = hf_processor(cfg)
    x = ramp
    if getattr(full, "do_rescale", False):
        x = full.rescale(x, full.rescale_factor, input_data_format="channels_last")
    if getattr(full, "do_normalize", False):  # MobileViT has no normalise step, nor the attribute
        x = full.normalize(x, full.image_mean, full.image_std, input_data_format="channels_last")
    if getattr(full, "do_flip_channel_order", False):
        x = x[..., ::-1]
    lut = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[0].T)  # (3, 256)
    rebuilt = np.stack([lut[c][levels[c]] for c in range(3)])
    assert rebuilt.dtype == pv.dtype and np.array_equal(rebuilt.view(np.uint32), pv.view(np.uint32)), \
        "levels + lut do not give back HF's pixel_values bit for bit"
    return levels.transpose(1, 2, 0), lut


def decoded_hash(img: Image.Image) -> str:
    arr = np.asarray(img)
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


# ------------------------------------------------------------------------------ synthetic files


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def synthetic_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {}
    files["grey16_png"] = save(Image.fromarray(np.full((6, 8), 32768, np.uint16)), "PNG")
    ramp = np.linspace(0, 65535, 48).astype(np.uint16).reshape(6, 8)
    files["ramp16_png"] = save(Image.fromarray(ramp), "PNG")
    photo = Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    files["exif6_jpeg"] = save(photo, "JPEG", quality=95, exif=exif)
    files["cmyk_jpeg"] = save(photo.convert("CMYK"), "JPEG", quality=95)
    pal = Image.new("P", (8, 6))
    pal.putpalette([255, 0, 0, 0, 128, 255, 10, 200, 30] + [0] * (256 * 3 - 9))
    pal.putdata([(x + y) % 3 for y in range(6) for x in range(8)])
    files["palette_trns_png"] = save(pal, "PNG", transparency=0)
    la = Image.merge("LA", [Image.fromarray(rng.integers(0, 256, (6, 8), dtype=np.uint8)),
                            Image.fromarray(rng.integers(0, 256, (6, 8), dtype=np.uint8))])
    files["la_png"] = save(la, "PNG")
    rgba = Image.fromarray(rng.integers(0, 256, (6, 8, 4), dtype=np.uint8), "RGBA")
    files["rgba_png"] = save(rgba, "PNG")
    files["bilevel_png"] = save(Image.fromarray(rng.integers(0, 2, (6, 8), dtype=np.uint8) * 255).convert("1"), "PNG")
    frames = [Image.new("RGB", (8, 6), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    files["animated_gif"] = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return files


def check_defaults(img: Image.Image) -> float:
    """Every processor type tfm knows, configured by its name alone: tfm's defaults must be HF's."""
    import transformers

    from tfm.core.images import _TYPES, Preprocessor

    worst = 0.0
    for kind in _TYPES:
        if kind == "Data2VecVision":  # not a class of its own: its configs name BeitImageProcessor
            continue
        name = f"{kind}ImageProcessor"
        cfg = {"image_processor_type": name}
        hf = getattr(transformers, name).from_dict(cfg)(img, return_tensors="np")["pixel_values"][0]
        ours = Preprocessor.from_config(cfg)(img)
        assert ours.shape == hf.shape, (name, ours.shape, hf.shape)
        worst = max(worst, float(np.abs(ours - hf).max()))
    return worst


def main() -> int:
    from transformers.image_utils import load_image

    sys.path.insert(0, str(HERE.parent.parent))
    from tfm.core.images import Preprocessor, open_image

    make_photos()
    data: dict[str, np.ndarray] = {"configs": np.array(json.dumps(CONFIGS, sort_keys=True))}
    names = [f for f, _, _ in PHOTO_SOURCES]
    data["photos"] = np.array(names)
    hashes = []
    worst: dict[str, float] = {}
    for filename in names:
        path = PHOTOS / filename
        hf_img = load_image(str(path))
        tfm_img = open_image(path)
        assert np.array_equal(np.asarray(hf_img), np.asarray(tfm_img)), f"decoding {filename} differs from HF"
        hashes.append(decoded_hash(tfm_img))
        for cname, cfg in CONFIGS.items():
            if cname in ONLY and filename not in ONLY[cname]:
                continue
            pv = hf_processor(cfg)(hf_img, return_tensors="np")["pixel_values"][0]
            assert pv.dtype == np.float32, pv.dtype
            levels, lut = hf_levels_and_lut(cfg, hf_img, pv)
            data[f"levels__{filename}__{cname}"] = np.frombuffer(save(Image.fromarray(levels), "PNG", optimize=True),
                                                                 dtype=np.uint8)
            data[f"lut__{cname}"] = lut
            ours = Preprocessor.from_config(cfg)(tfm_img)
            assert ours.shape == pv.shape, (filename, cname, ours.shape, pv.shape)
            worst[cname] = max(worst.get(cname, 0.0), float(np.abs(ours - pv).max()))
    data["decoded_sha256"] = np.array(hashes)

    for case, blob in synthetic_files().items():
        data[f"syn__{case}__file"] = np.frombuffer(blob, dtype=np.uint8)
        hf = np.asarray(load_image(Image.open(io.BytesIO(blob))))
        data[f"syn__{case}__hf"] = hf
        if case == "grey16_png":
            data[f"syn__{case}__tfm"] = np.full(hf.shape, 128, np.uint8)
        if case == "ramp16_png":
            ramp = np.asarray(Image.open(io.BytesIO(blob))).astype(np.int64)
            data[f"syn__{case}__tfm"] = np.repeat(np.floor(ramp / 257 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)
    np.savez_compressed(OUT, **data)

    print("max |tfm - HF| per config:")
    print(f"  {'defaults':12s} {check_defaults(open_image(PHOTOS / names[0])):.3g}  (each known type, name only)")
    for cname, diff in worst.items():
        print(f"  {cname:12s} {diff:.3g}")
    # tiny-vit's reference came from the full-size photos
    import skimage.data

    ref = np.load(HERE.parent / "fixtures" / "tiny-vit" / "reference.npz")
    pre = Preprocessor.from_config(CONFIGS["vit32"])
    full = {"chelsea": skimage.data.chelsea, "coffee": skimage.data.coffee, "rocket": skimage.data.rocket}
    diff = max(float(np.abs(pre(full[n]()) - ref["pixel_values"][i]).max()) for i, n in enumerate(ref["image_names"]))
    print(f"  tiny-vit reference.npz (full-size photos): {diff:.3g}")
    for p in sorted(PHOTOS.iterdir()):
        print(f"{p.stat().st_size:8,d}  {p.relative_to(HERE)}")
    print(f"{OUT.stat().st_size:8,d}  {OUT.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
