"""tfm embed: token ids to the model's embedding vectors."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Looks each token id up in the model's own word embedding table, read from the
exported ONNX graph (the Gather of a constant table by input_ids), and adds
`inputs_embeds`, shape (T, D), to the record:

    inputs_embeds[t] = E[input_ids[t]]      E: (vocab_size, D)

Nothing else is applied here: the position and token-type embeddings and the
LayerNorm that BERT applies after adding them are the next stage's work
(tfm posenc). Ids outside the vocabulary are an error naming the id and the
vocabulary size. Text lines are tokenized on the fly.""",
    "EXAMPLES": """\
echo "A cat sits on the mat." | tfm tokenize | tfm embed | jq -c '.inputs_embeds | length'
tfm tokenize -f npy < lines.txt | tfm embed -f npy | tfm posenc -f npy | tfm encode""",
}


def command(
    inputs: C.Inputs = None,
    text: Annotated[Optional[List[str]], typer.Option("--text", "-t", help="Embed this text instead of reading input (repeatable).", show_default=False)] = None,
    model: C.Model = None,
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
    """Token ids to the model's own embedding vectors (inputs_embeds)."""

    def stage():
        from tfm.core.modeldir import resolve
        from tfm.core.stages import EmbedStage

        return EmbedStage(resolve(model), C.engine(device, threads, verbose), truncate=truncate)

    C.stream("embed", stage, inputs=inputs, output=output, fmt=fmt, batch_size=batch_size,
             fail_fast=fail_fast, quiet=quiet, accept_text=True, texts=text)
