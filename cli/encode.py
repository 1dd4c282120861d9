"""tfm encode: the encoder's full forward pass."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Runs a Transformer encoder (any Optimum feature-extraction export, e.g. a
BERT-family model) on token records and writes `last_hidden_state`, one
vector per token, shape (T, D). Text lines or records with `text` are
tokenized on the fly with the model's own tokenizer.

Records of different lengths are batched with padding; the padding is cut off
again, so each record's output has its own length and does not depend on what
it was batched with.

Records that carry `hidden_states` (from tfm posenc or tfm attend --add-norm)
are not embedded again: the model's graph is started at the place named by
their `seam` field (layers.0.input after posenc), or at the input of layer L
with --from-layer L. So

    tfm tokenize | tfm embed | tfm posenc | tfm encode  ==  tfm tokenize | tfm encode

--tap exposes intermediate tensors of the model under readable names (see
tfm-taps(1)): --tap attentions adds `layers.L.attention.probs` (H, T, T) for
every layer, --tap hidden-states adds `embeddings.output` and
`layers.L.output` (T, D). The final outputs are unchanged by taps.

--pool adds `sentence_embedding` (D,): `cls` takes the first token's vector,
`mean` averages the vectors of the tokens whose attention_mask is 1, `max`
takes the element-wise maximum over them. --normalize scales it to unit L2
length, so that a dot product of two sentence vectors is their cosine
similarity (for all-MiniLM-L6-v2 that is the sentence-transformers recipe:
--pool mean --normalize).""",
    "EXAMPLES": """\
echo "A cat sits on the mat." | tfm tokenize | tfm encode --pool mean --normalize
tfm encode --pool mean --normalize --no-hidden < sentences.txt | jq -c .sentence_embedding
tfm tokenize -f npy < sentences.txt | tfm encode -f npy > hidden.npy
tfm encode --model path/to/optimum-export --device cuda < sentences.txt
echo "A cat sits on the mat." | tfm encode --tap attentions | jq -c '.["layers.5.attention.probs"][0][0]'""",
}


def command(
    inputs: C.Inputs = None,
    text: Annotated[Optional[List[str]], typer.Option("--text", "-t", help="Encode this text instead of reading input (repeatable).", show_default=False)] = None,
    model: C.Model = None,
    pool: Annotated[Optional[str], typer.Option("--pool", help="Add sentence_embedding: cls, mean or max.", show_default=False)] = None,
    normalize: Annotated[bool, typer.Option("--normalize", help="L2-normalize the sentence embedding.")] = False,
    hidden: Annotated[bool, typer.Option("--hidden/--no-hidden", help="Write last_hidden_state (--no-hidden: only the pooled vector).")] = True,
    from_layer: Annotated[Optional[int], typer.Option("--from-layer", help="Start at layer L: input records carry that layer's input as hidden_states.", min=0, show_default=False)] = None,
    tap: Annotated[Optional[List[str]], typer.Option("--tap", help="Add intermediate tensors to the output: attentions, hidden-states, a name glob or an operator type (repeatable; see tfm taps).", show_default=False)] = None,
    truncate: C.Truncate = False,
    device: C.Device = "auto",
    threads: C.Threads = None,
    fmt: C.Format = "json",
    output: C.Output = None,
    batch_size: C.BatchSize = 32,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
    verbose: C.Verbose = False,
):
    """A full encoder forward pass: token records to hidden states and sentence vectors."""

    def stage():
        from tfm.core.encode import EncodeStage
        from tfm.core.modeldir import resolve

        return EncodeStage(resolve(model), C.engine(device, threads, verbose), pool=pool, normalize=normalize,
                           truncate=truncate, hidden=hidden, from_layer=from_layer, taps=tap)

    C.stream("encode", stage, inputs=inputs, output=output, fmt=fmt, batch_size=batch_size,
             fail_fast=fail_fast, quiet=quiet, accept_text=True, texts=text)
