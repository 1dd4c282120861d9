"""The embedded translation models: marian-en-zh (translate's default) and marian-zh-en.

The references in tests/data/marian-DIRECTION-generate.json were made by the
recipe (models/recipes/marian_gettext.py references) with Optimum's
ORTModelForSeq2SeqLM, i.e. transformers' generate() over the very ONNX files
shipped here, one sentence at a time. tfm's own generation loop must give the
same tokens; beam scores agree to 1e-4.
"""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, json_records, tfm
from tfm import models
from tfm.core.engine import Engine
from tfm.core.modeldir import resolve
from tfm.core.stream import Record
from tfm.core.translate import Settings, TranslateStage

DIRECTIONS = ["en-zh", "zh-en"]


def reference(direction):
    ref = json.loads((ROOT / "tests" / "data" / f"marian-{direction}-generate.json").read_text(encoding="utf-8"))
    shipped = models.manifest(models.embedded()[f"marian-{direction}"])["files"]
    for name, digest in ref["model_sha256"].items():
        assert shipped[name] == digest, f"references are for another {name}: rerun the recipe's `references`"
    return ref


def run(direction, sources, beams, batch):
    model = resolve(f"marian-{direction}", task="text2text-generation")
    stage = TranslateStage(model, Engine("cpu", 2), Settings.from_model(model, beams=beams))
    items = [stage.prepare(Record({"text": s}, "t", i)) for i, s in enumerate(sources)]
    if batch:
        return stage.run(items)
    return [stage.run([it])[0] for it in items]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case,beams", [("greedy", 1), ("beam4", 4)])
def test_embedded_model_equals_hugging_face_generate(direction, case, beams):
    ref = reference(direction)
    sources = [e["source"] for e in ref["examples"]]
    for batch in (False, True):
        out = run(direction, sources, beams, batch)
        for example, rec in zip(ref["examples"], out):
            want = example["outputs"][case]
            assert rec["output_ids"].tolist() == want["output_ids"], (example["source"], batch)
            assert rec["translation"] == want["translation"]
            if "sequences_score" in want:
                assert rec["score"] == pytest.approx(want["sequences_score"], abs=1e-4)


def test_default_translator_is_en_zh_through_the_cli():
    ref = reference("en-zh")
    sources = [e["source"] for e in ref["examples"]]
    proc = tfm("translate", "-f", "text", input="\n".join(sources) + "\n", check=True)
    # the model's num_beams (4) is the default, batched across sentences
    assert proc.stdout.decode("utf-8").split("\n")[:-1] == [e["outputs"]["beam4"]["translation"]
                                                           for e in ref["examples"]]


def test_the_models_translate_common_messages():
    """Meaning, not just equality: frequent software strings come out right both ways."""
    proc = tfm("translate", "--model", "marian-zh-en", "-f", "text",
               input="无法打开文件 %s\n文件\n", check=True)
    assert proc.stdout.decode("utf-8").split("\n")[:2] == ["cannot open file %s", "File"]
    proc = tfm("translate", "-f", "text", input="File\n", check=True)
    assert proc.stdout.decode("utf-8").strip() == "文件"


def test_tfm_models_lists_both_with_scores_above_copying():
    rows = {r["name"]: r for r in json_records(tfm("models", "--format", "json", check=True).stdout)}
    for direction in DIRECTIONS:
        row = rows[f"marian-{direction}"]
        assert row["task"] == "text2text-generation" and "software messages" in row["summary"]
        assert row["default"] == (direction == "en-zh")
        # the card's claim: better than copying the source on the held-out test split
        scores = models.manifest(models.embedded()[f"marian-{direction}"])["scores"]
        assert scores["chrf_beam4"] > scores["chrf_copy_baseline"]
        assert scores["bleu_beam4"] > scores["bleu_copy_baseline"]
