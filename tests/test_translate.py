"""translate: the generation loop over raw ONNX graphs equals Hugging Face generate(), token for token.

The references were produced once by tests/fixtures/make_fixtures.py with
transformers' MarianMTModel.generate() on the same weights (batch 1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES, json_records, stderr_lines, tfm
from tfm.core.engine import Engine
from tfm.core.modeldir import resolve
from tfm.core.stream import Record
from tfm.core.translate import Settings, TranslateStage

MODELS = ["tiny-marian", "tiny-marian-trained"]


def reference(name):
    return json.loads((FIXTURES / name / "reference.json").read_text())


def settings_for(model, kwargs) -> Settings:
    over = {"beams": kwargs.get("num_beams", 1), "length_penalty": kwargs.get("length_penalty"),
            "no_repeat_ngram": kwargs.get("no_repeat_ngram_size"), "early_stopping": kwargs.get("early_stopping")}
    if "max_new_tokens" in kwargs:
        over["max_new_tokens"] = kwargs["max_new_tokens"]
    if "max_length" in kwargs:
        over["max_length"] = kwargs["max_length"]
    return Settings.from_model(model, **over)


def translate(name, case, sources, decoder="auto", batch=True):
    model = resolve(str(FIXTURES / name))
    stage = TranslateStage(model, Engine("cpu", 2), settings_for(model, reference(name)["cases"][case]), decoder=decoder)
    items = [stage.prepare(Record({"text": s}, "t", i)) for i, s in enumerate(sources)]
    if batch:
        return stage.run(items)
    return [stage.run([it])[0] for it in items]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("case", ["greedy", "beam4", "beam3_no_repeat_ngram2"])
def test_equals_generate(name, case):
    ref = reference(name)
    sources = [e["source"] for e in ref["examples"]]
    out = translate(name, case, sources, batch=False)
    for example, rec in zip(ref["examples"], out):
        want = example["outputs"][case]
        assert rec["output_ids"].tolist() == want["output_ids"], example["source"]
        if "sequences_score" in want:
            assert rec["score"] == pytest.approx(want["sequences_score"], abs=1e-4)


@pytest.mark.parametrize("case", ["greedy", "beam4"])
def test_batched_equals_one_at_a_time(case):
    ref = reference("tiny-marian-trained")
    sources = [e["source"] for e in ref["examples"]]
    together = translate("tiny-marian-trained", case, sources)
    for example, rec in zip(ref["examples"], together):
        assert rec["output_ids"].tolist() == example["outputs"][case]["output_ids"]


@pytest.mark.parametrize("decoder", ["merged", "split", "nocache"])
def test_every_decoder_layout_gives_the_same_output(decoder):
    ref = reference("tiny-marian")
    sources = [e["source"] for e in ref["examples"]]
    for case in ("greedy", "beam4"):
        out = translate("tiny-marian", case, sources, decoder=decoder)
        assert [r["output_ids"].tolist() for r in out] == [e["outputs"][case]["output_ids"] for e in ref["examples"]]


def test_trained_fixture_reproduces_its_pairs_through_the_cli():
    ref = reference("tiny-marian-trained")
    sources = [e["source"] for e in ref["examples"] if "training_target" in e]
    text = "\n".join(sources[:3]) + "\n\n" + sources[3] + "\n"
    proc = tfm("translate", "--model", FIXTURES / "tiny-marian-trained", "-f", "text", input=text, check=True)
    lines = proc.stdout.decode().split("\n")
    targets = {e["source"]: e["training_target"] for e in ref["examples"] if "training_target" in e}
    assert lines[:5] == [targets[s] for s in sources[:3]] + [""] + [targets[sources[3]]]


def test_records_fields_and_token_input():
    model = FIXTURES / "tiny-marian-trained"
    tok = tfm("tokenize", "--model", model, input="The cat sleeps.\n", check=True).stdout
    [a] = json_records(tfm("translate", "--model", model, input=tok, check=True).stdout)
    [b] = json_records(tfm("translate", "--model", model, input="The cat sleeps.\n", check=True).stdout)
    assert a["translation"] == b["translation"] == "Die Katze schläft."
    assert a["output_tokens"][-1] == "</s>" and isinstance(a["score"], float)


def test_bad_lines_keep_the_line_count():
    model = FIXTURES / "tiny-marian-trained"
    long = " ".join(["cat"] * 80)
    data = b"The cat sleeps.\n\xff\xfe bad\n" + long.encode() + b"\n\nWhere is the train station?\n"
    proc = tfm("translate", "--model", model, "-f", "text", input=data)
    assert proc.returncode == 1
    lines = proc.stdout.decode().split("\n")
    assert lines[:5] == ["Die Katze schläft.", "", "", "", "Wo ist der Bahnhof?"]
    errors = stderr_lines(proc)
    assert len(errors) == 2 and "UTF-8" in errors[0] and "--truncate" in errors[1]
    proc = tfm("translate", "--model", model, "--truncate", "--max-new-tokens", "5", "-f", "text", input=long + "\n", check=True)
    assert proc.stdout.count(b"\n") == 1


def test_not_a_seq2seq_model_is_fatal():
    proc = tfm("translate", "--model", FIXTURES / "tiny-bert", input="x\n")
    assert proc.returncode == 2 and "encoder_model.onnx" in proc.stderr.decode()


def tapped(name, case, sources, decoder="auto", batch=True):
    model = resolve(str(FIXTURES / name))
    stage = TranslateStage(model, Engine("cpu", 2), settings_for(model, reference(name)["cases"][case]),
                           decoder=decoder, taps=["attentions"])
    items = [stage.prepare(Record({"text": s}, "t", i)) for i, s in enumerate(sources)]
    return stage.run(items) if batch else [stage.run([it])[0] for it in items]


@pytest.mark.parametrize("case", ["greedy", "beam4"])
def test_cross_attention_taps_agree_across_decoder_layouts_and_batching(case):
    ref = reference("tiny-marian")
    sources = [e["source"] for e in ref["examples"]]
    runs = {d: tapped("tiny-marian", case, sources, decoder=d) for d in ("merged", "split", "nocache")}
    alone = tapped("tiny-marian", case, sources, batch=False)
    for i, example in enumerate(ref["examples"]):
        rec = runs["merged"][i]
        assert rec["output_ids"].tolist() == example["outputs"][case]["output_ids"]  # taps change nothing
        for layer in range(2):
            name = f"decoder.layers.{layer}.cross_attention.probs"
            probs = rec[name]
            assert probs.shape == (4, len(rec["output_ids"]) - 1, len(example["input_ids"]))
            np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
            for other in (runs["split"][i], runs["nocache"][i], alone[i]):
                np.testing.assert_allclose(other[name], probs, atol=1e-5)


def test_translate_tap_through_the_cli_and_unknown_tap():
    model = FIXTURES / "tiny-marian-trained"
    [rec] = json_records(tfm("translate", "--model", model, "--tap", "decoder.layers.1.**", input="The cat sleeps.\n",
                             check=True).stdout)
    assert "decoder.layers.1.cross_attention.probs" in rec and "decoder.layers.0.cross_attention.probs" not in rec
    proc = tfm("translate", "--model", model, "--tap", "encoder.nothing", input="x\n")
    assert proc.returncode == 2 and "matches nothing" in proc.stderr.decode()
