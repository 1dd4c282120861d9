"""tfm taps: what can be tapped in a model."""

from __future__ import annotations

from typing import Annotated

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Lists the intermediate tensors of a model that --tap (on tfm encode) can
expose, with their readable names, operator types and shapes where the graph
declares them (symbolic sizes such as batch_size and sequence_length are
named; unk__N means the exporter left the size open).

Names follow the model's structure, found from the graph itself:
`embeddings.word`, `embeddings.output` (= `layers.0.input`),
`layers.L.attention.probs` (H, T, T), `layers.L.attention.output`,
`layers.L.attention.add_norm`, `layers.L.output`; every other tensor is named
by its block, operator type and rank, e.g. `layers.2.erf.0` or
`embeddings.add.1`. A pattern given to --tap is matched against these names
(`*` within one dot-separated part, `**` across parts), against raw tensor
names, and against operator types (`Softmax`). The shortcuts `attentions`
and `hidden-states` stand for `layers.*.attention.probs` and
`embeddings.output` plus `layers.*.output`.

Tapped tensors are real outputs of the model's own graph: the graph is saved
with them added to its outputs (cached per model and tap set), and the session
is built without operator fusions, so nothing is hidden inside a fused
attention kernel. The model's final outputs stay the same.""",
    "EXAMPLES": """\
tfm taps | head
tfm taps --model path/to/export -f json | jq -r 'select(.op == "Softmax") | .name'
echo "A cat sits on the mat." | tfm encode --tap attentions --tap 'layers.0.**' | jq 'keys'""",
}


def command(
    model: C.Model = None,
    pattern: Annotated[str, typer.Option("--match", help="Only names matching this --tap pattern.")] = "**",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (for people) or json (JSON Lines).")] = "table",
):
    """List the internal tensors of a model that can be tapped."""
    from tfm.core import process

    def body() -> int:
        from tfm.core.modeldir import resolve
        from tfm.core.taps import list_taps

        list_taps(resolve(model), pattern, fmt)
        return 0

    raise typer.Exit(process.run("taps", body))
