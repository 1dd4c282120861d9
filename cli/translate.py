"""tfm translate: encoder-decoder generation."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Translates text with an encoder-decoder Transformer in the Optimum seq2seq
export layout (encoder_model.onnx with decoder_model_merged.onnx, or
decoder_model.onnx + decoder_with_past_model.onnx, or decoder_model.onnx
alone), e.g. a Marian model such as Helsinki-NLP/opus-mt-*. Without
--model it uses the embedded marian-en-zh (English to Simplified Chinese);
--model marian-zh-en goes the other way. Both are small models (7.7M
parameters) trained by tfm on the translated messages of Debian packages:
fit for short software strings, not for general text; their scores are in
`tfm models` and in each folder's MODEL_CARD.md. tfm runs the generation
loop itself, without PyTorch:

    encoder:  H = Encoder(source)                         once per sentence
    decoder:  p(y_t | y_<t, H) = Decoder(y_<t, H)         one token at a time

The decoder's self-attention is masked (causal): position t sees only the
tokens before it. Its cross-attention takes queries from the decoder and keys
and values from the encoder's output H. With a cache, the decoder's own keys
and values roll forward from step to step and the cross-attention keys and
values are computed once; --decoder nocache recomputes everything each step
(slow, but the same result).

Greedy search takes the most likely token each step; --beams N keeps the N
best partial translations, scoring a finished one by
sum(log p) / length^length_penalty. Both follow Hugging Face generate()
token for token, with the settings of the model's generation_config.json
(decoder start token, eos, pad, forced bos/eos, max length, beams, length
penalty, bad words such as pad), each overridable by a flag.

Input: text lines, records with `text`, or token records with `input_ids`.
Output, one record per input: `translation`, `output_ids` (with the decoder
start token), `output_tokens` and `score` (the same formula for greedy).
--format text prints only the translations, one line per input line, so
`tfm translate < in.txt > out.txt` works like any filter; an empty input
line gives an empty output line.

--tap attentions adds, for each decoder layer L,
`decoder.layers.L.cross_attention.probs` (H, N, S): row i is where each head
looked in the S source tokens while producing the i-th generated token (the
search's own steps, following the beam that won).""",
    "EXAMPLES": """\
echo "Permission denied" | tfm translate --format text
tfm translate --beams 4 < messages.txt > messages.zh.txt
tfm translate --model marian-zh-en --format text < messages.zh.txt
tfm translate --model path/to/opus-mt-export --beams 4 --max-new-tokens 64 -f json < in.txt | jq -r .translation""",
}


def command(
    inputs: C.Inputs = None,
    text: Annotated[Optional[List[str]], typer.Option("--text", "-t", help="Translate this text instead of reading input (repeatable).", show_default=False)] = None,
    model: C.Model = None,
    beams: Annotated[Optional[int], typer.Option("--beams", help="Beam search with N beams (1: greedy). Default: the model's num_beams.", min=1, show_default=False)] = None,
    length_penalty: Annotated[Optional[float], typer.Option("--length-penalty", help="Exponent of the length in a beam's score (default: the model's).", show_default=False)] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="At most N generated tokens (default: the model's max_length).", min=1, show_default=False)] = None,
    no_repeat_ngram_size: Annotated[Optional[int], typer.Option("--no-repeat-ngram-size", help="Never repeat an n-gram of this size.", min=0, show_default=False)] = None,
    decoder: Annotated[str, typer.Option("--decoder", help="Decoder graphs: auto, merged, split (decoder + decoder_with_past) or nocache.")] = "auto",
    tap: Annotated[Optional[List[str]], typer.Option("--tap", help="Add the decoder's cross-attention per step: attentions, or decoder.layers.L.cross_attention.probs (repeatable).", show_default=False)] = None,
    truncate: C.Truncate = False,
    device: C.Device = "auto",
    threads: C.Threads = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json (JSON Lines), npy (NumPy stream) or text (translations only).", rich_help_panel=C.STREAM)] = "json",
    output: C.Output = None,
    batch_size: C.BatchSize = 16,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
    verbose: C.Verbose = False,
):
    """Encoder-decoder generation: translate text, greedy or beam search."""

    def stage():
        from tfm.core.modeldir import resolve
        from tfm.core.translate import Settings, TranslateStage

        m = resolve(model, task="text2text-generation")
        m.onnx("encoder_model.onnx")  # not a seq2seq export: say so before anything else
        settings = Settings.from_model(m, beams=beams, length_penalty=length_penalty, max_new_tokens=max_new_tokens,
                                       no_repeat_ngram=no_repeat_ngram_size)
        return TranslateStage(m, C.engine(device, threads, verbose), settings, decoder=decoder, truncate=truncate,
                              taps=tap)

    C.stream("translate", stage, inputs=inputs, output=output, fmt=fmt, batch_size=batch_size,
             fail_fast=fail_fast, quiet=quiet, accept_text=True, texts=text,
             formats=("json", "npy", "text"), row=lambda f: f.get("translation", ""))
