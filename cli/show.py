"""tfm show: a record stream rendered for a person."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Reads any tfm stream and shows each record to a person: the end of a pipe, not
a stage in it. On the terminal it prints, for each record, a heading with its
text, path or seam, then

* a token table: index, token, id, character offsets into the text, whether it
  is a special token, and the piece of text it covers;
* a summary of every tensor: shape, dtype, mean, standard deviation, minimum,
  maximum and the count of NaN and Inf values (computed over the finite ones);
* an attention heatmap: one head of one layer, the tokens as row (query) and
  column (key) labels, each weight written as .42 (· is below .005) on a
  viridis colour scale;
* for tfm classify records, the top-k labels with bars; for tfm patchify
  records, the patch grid and its indices.

Attention comes from `attentions` (H, T, T), as tfm attend writes it (its
`seam` names the layer), or from the taps of tfm encode --tap attentions,
one field `layers.L.attention.probs` per layer. --layer L picks
`layers.L.attention.probs` when the record has it, else `attentions`;
without --layer the lowest layer is shown. --head picks a head, or mean for
the mean over the heads.

--png PATH draws pictures instead, with Pillow: an attention map with token
labels on both axes and a colour bar, a positional-encoding heatmap
(positions by dimensions, blue below zero and red above), the image of a
patchify record cut into its patches with their indices, and top-k class
bars. PATH is one file when it ends in .png and one record arrives;
otherwise it is a folder (made if needed) that receives
PATH/<record>-<kind>.png, e.g. out/1-attention.png. Each PNG carries its
layout as text chunks (tfm:kind, tfm:heatmap with the heatmap's box and cell
size, tfm:range), so a program can read a cell back.

--what picks the sections: tokens, tensors, attention, posenc, hidden,
patches, classes (comma-separated; all is everything). By default the
terminal shows tokens, tensors, attention, patches and classes, and --png
draws attention, posenc, patches and classes, each where the record has the
fields for it; a picture of the hidden states is drawn when nothing else can
be. A section named in --what that a record cannot show is an error for that
record.

Colour is used only when standard output is a terminal, and never when
NO_COLOR is set or TERM is dumb (FORCE_COLOR forces it); without colour the
output has no escape codes at all. The width is the terminal's (or COLUMNS);
a heatmap wider than that is cut, and --max-tokens cuts it further. Error
records from upstream are shown as an error line and counted: the exit
status is then 1.""",
    "EXAMPLES": """\
echo "A cat sits on the mat." | tfm tokenize | tfm show
echo "A cat sits on the mat." | tfm tokenize | tfm encode --tap attentions | tfm show --layer 5 --head mean
echo "A cat sits on the mat." | tfm tokenize | tfm embed | tfm posenc | tfm attend --layer 0 | tfm show --head 3
tfm tokenize < sentences.txt | tfm embed | tfm posenc | tfm attend | tfm show --png maps/ --head mean
echo "A cat sits on the mat." | tfm tokenize | tfm embed | tfm posenc --only | tfm show --png posenc.png
tfm show --what tensors hidden.npy""",
}


def command(
    inputs: C.Inputs = None,
    layer: Annotated[Optional[int], typer.Option("--layer", "-l", help="Show the attention of layer N (default: the lowest the record has).", min=0, show_default=False)] = None,
    head: Annotated[str, typer.Option("--head", "-H", help="Attention head to show: a number, or mean for the mean over heads.")] = "0",
    png: Annotated[Optional[Path], typer.Option("--png", help="Draw pictures: FILE.png for one record, else a folder of <record>-<kind>.png.", show_default=False)] = None,
    what: Annotated[Optional[str], typer.Option("--what", help="Sections to show: tokens,tensors,attention,posenc,hidden,patches,classes (default: all that apply).", show_default=False)] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Show at most N rows and columns of a heatmap on the terminal (default: as many as fit).", min=1, show_default=False)] = None,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
):
    """Show records to a person: token table, tensor summary, attention heatmap, pictures."""
    from tfm.core import process

    def body() -> int:
        import sys

        from tfm.core.show import Options, parse_head, parse_what, show
        from tfm.core.stream import read_records

        options = Options(layer=layer, head=parse_head(head), png=png, what=parse_what(what),
                          max_tokens=max_tokens, quiet=quiet, fail_fast=fail_fast)
        records = read_records(C.open_inputs(inputs))
        return show(records, options, sys.stdout.buffer)

    raise typer.Exit(process.run("show", body, quiet=quiet))
