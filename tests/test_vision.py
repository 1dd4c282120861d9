"""patchify and classify on tiny ViT exports (random weights for the format, trained ones for meaning)."""

from __future__ import annotations

import csv
import io
import shutil

import numpy as np
from PIL import Image

from conftest import DATA, FIXTURES, json_records, npy_records, stderr_lines, tfm
from tfm.core.engine import Engine
from tfm.core.modeldir import resolve
from tfm.core.stream import Record
from tfm.core.vision import ClassifyStage, PatchifyStage, to_patches

TRAINED = FIXTURES / "tiny-vit-trained"
PHOTOS = DATA / "photos"


def photo(name: str) -> str:
    [path] = [p for p in PHOTOS.iterdir() if p.stem == name]
    return str(path)


def test_patches_are_row_major_with_channels_last():
    p, rows, cols = 4, 3, 5
    pixels = np.zeros((3, rows * p, cols * p), np.float32)
    for r in range(rows):
        for c in range(cols):
            pixels[:, r * p:(r + 1) * p, c * p:(c + 1) * p] = (r * cols + c) + np.array([0.0, 0.1, 0.2])[:, None, None]
    patches = to_patches(pixels, p)
    assert patches.shape == (rows * cols, p * p * 3)
    for k in range(rows * cols):
        np.testing.assert_allclose(patches[k].reshape(p, p, 3)[0, 0], [k, k + 0.1, k + 0.2], atol=1e-6)


def test_patchify_a_photo_gives_196_tokens_at_224():
    [rec] = json_records(tfm("patchify", photo("chelsea"), check=True).stdout)
    assert rec["grid"] == [14, 14] and rec["patch_size"] == 16 and rec["image_size"] == [224, 224]
    assert len(rec["patches"]) == 196 and len(rec["patches"][0]) == 768
    [rec] = json_records(tfm("patchify", "--patch-size", "32", "--image-size", "64", photo("chelsea"), check=True).stdout)
    assert rec["grid"] == [2, 2] and len(rec["patches"][0]) == 32 * 32 * 3


def test_project_equals_the_models_own_encoder_input_and_encode_finishes_it():
    ref = np.load(TRAINED / "reference.npz")
    m, e = resolve(str(TRAINED)), Engine("cpu", 2)
    stage = PatchifyStage(m, e, None, project=True)
    items = [Record({"path": f"ref{i}"}, "x", i, data=ref["pixel_values"][i]) for i in range(3)]
    out = stage.run(items)
    for i, rec in enumerate(out):
        assert rec["hidden_states"].shape == (17, 32) and rec["seam"] == "layers.0.input"
        np.testing.assert_allclose(rec["hidden_states"], ref["hidden_states"][0, i], atol=1e-5)
    # patchify --project | encode == the encoder path of classify (its final [CLS] state feeds the classifier)
    from tfm.core.encode import EncodeStage

    enc = EncodeStage(m, e)
    finished = enc.run([enc.prepare(Record(r, "x", i)) for i, r in enumerate(out)])
    classify = ClassifyStage(m, e, taps=["last_hidden_state"])
    direct = classify.run(items)
    for a, b in zip(finished, direct):
        np.testing.assert_allclose(a["last_hidden_state"], b["last_hidden_state"], atol=1e-5)


def test_patchify_project_pipe_into_encode():
    a = tfm("patchify", "--model", TRAINED, "--project", "-f", "npy", photo("rocket"), check=True).stdout
    [rec] = npy_records(tfm("encode", "--model", TRAINED, "--pool", "cls", "-f", "npy", input=a, check=True).stdout)
    assert rec["last_hidden_state"].shape == (17, 32) and rec["sentence_embedding"].shape == (32,)


def test_classify_logits_equal_torch():
    ref = np.load(TRAINED / "reference.npz")
    stage = ClassifyStage(resolve(str(TRAINED)), Engine("cpu", 2), top_k=3, logits=True, taps=["attentions"])
    out = stage.run([Record({"path": str(i)}, "x", i, data=ref["pixel_values"][i]) for i in range(3)])
    for i, rec in enumerate(out):
        np.testing.assert_allclose(rec["logits"], ref["logits"][i], atol=1e-4)
        for layer in range(2):
            np.testing.assert_allclose(rec[f"layers.{layer}.attention.probs"], ref["attentions"][layer, i], atol=1e-4)
    assert [r["labels"][0] for r in out] == ["cat", "coffee", "rocket"]


def test_classify_real_photos_in_order_with_summary():
    files = [photo("rocket"), photo("chelsea"), photo("coffee")]
    proc = tfm("classify", "--model", TRAINED, "--top-k", "2", *files, check=True)
    recs = json_records(proc.stdout)
    assert [r["path"] for r in recs] == files
    assert [r["labels"][0] for r in recs] == ["rocket", "cat", "coffee"]
    assert all(len(r["labels"]) == 2 and r["scores"][0] >= r["scores"][1] for r in recs)
    [summary] = stderr_lines(proc)
    assert summary.startswith("tfm classify: 3 images, 0 failed")
    assert "\r" not in proc.stderr.decode()  # no progress bar when stderr is not a terminal


def test_folders_globs_stdin_and_csv(tmp_path):
    for name in ("chelsea", "coffee", "rocket"):
        shutil.copy(photo(name), tmp_path / (name + ".png" if name == "rocket" else name + ".jpg"))
    (tmp_path / "sub").mkdir()
    shutil.copy(photo("chelsea"), tmp_path / "sub" / "again.jpg")
    recs = json_records(tfm("classify", "--model", TRAINED, "-q", tmp_path, check=True).stdout)
    assert len(recs) == 4
    recs = json_records(tfm("classify", "--model", TRAINED, "-q", "--glob", "*.png", tmp_path, check=True).stdout)
    assert [r["labels"][0] for r in recs] == ["rocket"]
    recs = json_records(tfm("classify", "--model", TRAINED, "-q", "--no-recursive", tmp_path, check=True).stdout)
    assert len(recs) == 3
    stdin = f"{tmp_path / 'coffee.jpg'}\n{tmp_path / 'sub' / 'again.jpg'}\n"
    proc = tfm("classify", "--model", TRAINED, "-q", "-f", "csv", "-k", "1", input=stdin, check=True)
    rows = list(csv.reader(io.StringIO(proc.stdout.decode())))
    assert rows[0] == ["path", "label_1", "score_1", "error"]
    assert [r[1] for r in rows[1:]] == ["coffee", "cat"]


def test_bad_images_get_error_records_and_the_run_goes_on(tmp_path):
    good = photo("coffee")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    proc = tfm("classify", "--model", TRAINED, empty, good, text)
    assert proc.returncode == 1
    recs = json_records(proc.stdout)
    assert [r.get("ok", True) for r in recs] == [False, True, False]
    assert recs[0]["path"] == str(empty) and recs[1]["labels"][0] == "coffee"
    errors = [line for line in stderr_lines(proc) if "error" in line]
    assert len(errors) == 2 and all(line.startswith("tfm classify: error: ") for line in errors)
    proc = tfm("classify", "--model", TRAINED, "--fail-fast", empty, good)
    assert proc.returncode == 1 and len(json_records(proc.stdout)) == 1


def test_resume_skips_done_images_and_repairs_a_cut_line(tmp_path):
    files = [photo("rocket"), photo("chelsea"), photo("coffee")]
    out = tmp_path / "out.jsonl"
    tfm("classify", "--model", TRAINED, "-q", "-o", out, *files[:2], check=True)
    first = out.read_bytes()
    out.write_bytes(first + b'{"path": "' + files[2].encode() + b'", "lab')  # killed mid-line
    proc = tfm("classify", "--model", TRAINED, "-o", out, "--resume", *files, check=True)
    recs = json_records(out.read_bytes())
    assert [r["path"] for r in recs] == files
    assert out.read_bytes().startswith(first)
    assert "1 images, 0 failed" in proc.stderr.decode()


def test_examples_classify_by_prototype(tmp_path):
    ex = tmp_path / "examples"
    for cls, name in (("feline", "chelsea"), ("drink", "coffee"), ("spacecraft", "rocket")):
        (ex / cls).mkdir(parents=True)
        img = Image.open(photo(name)).convert("RGB")
        w, h = img.size
        for k, box in enumerate([(0, 0, w * 3 // 4, h * 3 // 4), (w // 4, h // 4, w, h), (0, 0, w, h)]):
            img.crop(box).save(ex / cls / f"{k}.png")
    files = [photo("coffee"), photo("rocket"), photo("chelsea")]
    recs = json_records(tfm("classify", "--model", TRAINED, "-q", "--examples", ex, *files, check=True).stdout)
    assert [r["labels"][0] for r in recs] == ["drink", "spacecraft", "feline"]
    assert all(-1.0 <= s <= 1.0 for r in recs for s in r["scores"])


def test_random_vit_exports_work_too():
    recs = json_records(tfm("classify", "--model", FIXTURES / "tiny-vit", "-q", photo("coffee"), check=True).stdout)
    assert set(recs[0]["labels"]) <= {"cat", "coffee", "rocket"} and abs(sum(recs[0]["scores"]) - 1) < 1e-5
