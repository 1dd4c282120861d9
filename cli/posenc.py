"""tfm posenc: position information, sinusoidal or the model's own."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Attention by itself does not know the order of the tokens; position
information is added to each token vector before the first layer.

--kind learned (the default; what BERT-family models do) runs the model's own
graph from the word embeddings to the input of layer 0. For BERT that is

    hidden_states = LayerNorm(inputs_embeds + P[position] + S[token_type_ids])

with P the learned position table and S the token-type table, all read from
the exported ONNX graph. The output record has `hidden_states` (T, D) and
`seam` = "layers.0.input", which tfm encode and tfm attend start from.

--kind sinusoidal adds the original Transformer's fixed encoding to any
(T, D) tensor (inputs_embeds, hidden_states, or a bare .npy array), no model
needed:

    PE[pos, 2i]   = sin(pos / 10000^(2i/d))
    PE[pos, 2i+1] = cos(pos / 10000^(2i/d))

"sin on even, cos on odd" counts dimensions from 0, as above: dimension 0 is
a sine, dimension 1 a cosine. Counted from 1, as many notes do, it reads the
other way round. Each pair of dimensions is a rotation at its own frequency,
so PE[p]·PE[q] depends only on the distance p - q.

--only writes the encoding itself, `position_encoding` (T, D), e.g. for a
plot; without input give --length T (and --dim D for sinusoidal). With
--kind learned --only it is the first T rows of the model's position table.""",
    "EXAMPLES": """\
echo "A cat sits on the mat." | tfm tokenize | tfm embed | tfm posenc | tfm encode
tfm posenc --kind sinusoidal --only --length 50 --dim 128 -f npy > pe.npy
python -c 'import numpy; numpy.save("x.npy", numpy.zeros((10, 16), "f4"))'; tfm posenc --kind sinusoidal x.npy""",
}


def command(
    inputs: C.Inputs = None,
    model: C.Model = None,
    kind: Annotated[str, typer.Option("--kind", "-k", help="learned (the model's own seam) or sinusoidal.")] = "learned",
    only: Annotated[bool, typer.Option("--only", help="Write the encoding alone: position_encoding (T, D).")] = False,
    length: Annotated[Optional[int], typer.Option("--length", help="With --only and no input: number of positions T.", min=1, show_default=False)] = None,
    dim: Annotated[Optional[int], typer.Option("--dim", help="With --only --kind sinusoidal and no input: width D.", min=1, show_default=False)] = None,
    device: C.Device = "auto",
    threads: C.Threads = None,
    fmt: C.Format = "json",
    output: C.Output = None,
    batch_size: C.BatchSize = 32,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
    verbose: C.Verbose = False,
):
    """Add position information: the model's own (learned) or sinusoidal."""
    from tfm.core import process

    if only and length is not None:
        def body() -> int:
            from tfm.core.errors import FatalError
            from tfm.core.stages import PosencStage
            from tfm.core.stream import RecordWriter

            C.check_format(fmt)
            if kind == "sinusoidal" and dim is None:
                raise FatalError("--only --kind sinusoidal --length T also needs --dim D")
            stage = PosencStage(resolve_model(model) if kind == "learned" else None, None, kind, only=True)
            pe = stage.encoding(length, dim)
            RecordWriter(C.open_output(output), fmt).write({"position_encoding": pe})
            return 0

        raise typer.Exit(process.run("posenc", body, quiet=quiet))

    def stage():
        from tfm.core.stages import PosencStage

        needs_model = kind == "learned"
        return PosencStage(resolve_model(model) if needs_model else None,
                           C.engine(device, threads, verbose) if needs_model and not only else None, kind, only=only)

    C.stream("posenc", stage, inputs=inputs, output=output, fmt=fmt, batch_size=batch_size,
             fail_fast=fail_fast, quiet=quiet)


def resolve_model(model):
    from tfm.core.modeldir import resolve

    return resolve(model)
