"""tfm attend: scaled dot-product attention."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Scaled dot-product attention:

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Each query row is compared with every key by a dot product; softmax turns a
row of scores into weights that sum to 1; the output row is the weighted mean
of the value rows. With --heads H the width D is split into H heads of
d_k = D/H that attend independently; their outputs are concatenated.

Math mode (no --model): the record supplies the arrays. q, k and v are taken
from the fields `q`, `k`, `v` (or --query/--key/--value; a missing k is q and
a missing v is k, so one tensor alone is self-attention). Cross-attention takes
queries from one field and keys and values from another. `attention_mask`
(one 0/1 per key) masks padding; --causal lets position i see only keys up to
i, as a decoder does. Output: `context` (T, D_v) and `attentions` (H, T, T_k).
Masked weights are exactly 0; a query that may see no key at all gets zero
weights and a zero context, and a warning.

Why √d_k: the dot product of two random d_k-dimensional vectors has a standard
deviation growing like √d_k, so without the scale (--scale none) softmax
saturates towards one-hot weights and its gradients vanish.

Model mode (--model M --layer L, or a record whose `seam` says which layer
it enters): runs layer L's own self-attention from the model's ONNX graph on
the incoming `hidden_states`: Q/K/V projections, heads, scaling, mask,
softmax, context, output projection. Output adds `attentions` (H, T, T) and
`attention_output` (T, D). --add-norm also applies the residual connection and
the LayerNorm exactly as the model does (for BERT:
LayerNorm(hidden_states + attention_output)) and replaces `hidden_states`
with the result, seam layers.L.attention.add_norm, which tfm encode continues
from.""",
    "EXAMPLES": """\
echo "A cat sits on the mat." | tfm tokenize | tfm embed | tfm posenc | tfm attend --layer 0 | jq -c '.attentions[0][1]'
tfm tokenize | tfm embed | tfm posenc | tfm attend --add-norm | tfm encode
echo '{"q": [[1.0, 0.0], [0.0, 1.0]], "k": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "v": [[1.0], [2.0], [3.0]]}' | tfm attend
tfm attend --heads 4 --causal --scale none < qkv.jsonl""",
}


def command(
    inputs: C.Inputs = None,
    model: C.Model = None,
    layer: Annotated[Optional[int], typer.Option("--layer", "-l", help="Model mode: which layer's attention (default: the record's seam).", show_default=False)] = None,
    add_norm: Annotated[bool, typer.Option("--add-norm", help="Model mode: also the residual connection and LayerNorm.")] = False,
    heads: Annotated[int, typer.Option("--heads", "-H", help="Math mode: number of heads H (H must divide D).", min=1)] = 1,
    scale: Annotated[str, typer.Option("--scale", help="Math mode: sqrt (divide by √d_k) or none.")] = "sqrt",
    causal: Annotated[bool, typer.Option("--causal", help="Math mode: position i sees only keys up to i.")] = False,
    query: Annotated[Optional[str], typer.Option("--query", help="Math mode: field with the queries (default q).", show_default=False)] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="Math mode: field with the keys (default k, else the queries).", show_default=False)] = None,
    value: Annotated[Optional[str], typer.Option("--value", help="Math mode: field with the values (default v, else the keys).", show_default=False)] = None,
    device: C.Device = "auto",
    threads: C.Threads = None,
    fmt: C.Format = "json",
    output: C.Output = None,
    batch_size: C.BatchSize = 32,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
    verbose: C.Verbose = False,
):
    """Scaled dot-product attention: on given arrays, or with a model's own layer."""

    def stage():
        from tfm.core.errors import FatalError

        engine = C.engine(device, threads, verbose)
        model_mode = model is not None or layer is not None or add_norm
        if model_mode:
            if heads != 1 or scale != "sqrt" or causal or query or key or value:
                raise FatalError("--heads, --scale, --causal, --query, --key and --value are for math mode (no --model/--layer)")
            from tfm.core.modeldir import resolve
            from tfm.core.stages import ModelAttendStage

            return ModelAttendStage(resolve(model), engine, layer, add_norm)
        from tfm.core.attention import MathAttendStage

        return _Auto(engine, MathAttendStage(engine, heads=heads, scale=scale, causal=causal, query=query,
                                             key=key, value=value))

    C.stream("attend", stage, inputs=inputs, output=output, fmt=fmt, batch_size=batch_size,
             fail_fast=fail_fast, quiet=quiet)


class _Auto:
    """No --model: records that carry a model seam use the default model's layer; others are math."""

    def __init__(self, engine, math):
        self.engine, self.math, self.model = engine, math, None

    def _model(self):
        if self.model is None:
            from tfm.core.modeldir import resolve
            from tfm.core.stages import ModelAttendStage

            self.model = ModelAttendStage(resolve(None), self.engine, None, False)
        return self.model

    def prepare(self, rec):
        if isinstance(rec.fields.get("seam"), str) and "q" not in rec.fields:
            return ("model", self._model().prepare(rec))
        return ("math", self.math.prepare(rec))

    def run(self, items):
        out = [None] * len(items)
        for mode, stage in (("model", self.model), ("math", self.math)):
            idx = [k for k, (m, _) in enumerate(items) if m == mode]
            if idx:
                for k, res in zip(idx, stage.run([items[k][1] for k in idx])):
                    out[k] = res
        return out
