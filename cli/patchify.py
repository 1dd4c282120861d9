"""tfm patchify: an image as a Vision Transformer sees it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
A Vision Transformer reads an image as a sequence of patches. The image is
preprocessed (resized, rescaled, normalised) as the model's
preprocessor_config.json says, then cut into P×P patches: a 224×224 image with
16×16 patches gives a 14×14 grid, 196 tokens of 16·16·3 = 768 values each.

Output, one record per image: `path`, `patches` (N, P·P·C) in row-major patch
order (patch k is at grid row k // cols, column k % cols; each patch is
flattened row by row with the channels last), `grid` [rows, cols],
`patch_size` and `image_size` [H, W].

--project (with --model) also runs the model's own first stage from its ONNX
graph: each patch projected to the model width (the patch-embedding
convolution), the [CLS] token put in front, and the learned position
embeddings added, giving `hidden_states` (N+1, D) with seam layers.0.input,
the input of the encoder's first layer. So

    tfm patchify --model M --project img.png | tfm encode --model M

runs exactly the encoder that tfm classify runs.

Images come as arguments (files or folders, walked recursively), or as paths
on standard input (one per line, or records with a `path` field). Unreadable
images get an error record; the run goes on and exits 1 at the end.""",
    "EXAMPLES": """\
tfm patchify photo.jpg | jq -c '{grid, n: (.patches | length), width: (.patches[0] | length)}'
tfm patchify --patch-size 32 --image-size 256 photos/ -f npy > patches.npy
tfm patchify --model vit-digits --project digit.png | tfm encode --model vit-digits --pool cls""",
}


def command(
    inputs: C.Inputs = None,
    model: C.Model = None,
    patch_size: Annotated[Optional[int], typer.Option("--patch-size", help="Patch side P (default: the model's, else 16).", min=1, show_default=False)] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Square size the image is resized to without --model (default 224).", min=1, show_default=False)] = None,
    project: Annotated[bool, typer.Option("--project", help="Also apply the model's patch projection, [CLS] token and position embeddings.")] = False,
    glob: C.Glob = None,
    recursive: C.Recursive = True,
    workers: C.Workers = None,
    device: C.Device = "auto",
    threads: C.Threads = None,
    fmt: C.Format = "json",
    output: C.Output = None,
    batch_size: C.BatchSize = 16,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
    verbose: C.Verbose = False,
):
    """A Vision Transformer's view of an image: patches, projection, [CLS], positions."""

    def stage():
        from tfm.core.modeldir import resolve
        from tfm.core.vision import PatchifyStage, preprocessor

        m = resolve(model, task="image-classification") if (model or project) else None
        pre = preprocessor(m, image_size)
        s = PatchifyStage(m, C.engine(device, threads, verbose) if project else None, patch_size, project)
        s.check_size(pre.size)
        return s, pre

    C.image_stream("patchify", stage, inputs=inputs, output=output, fmt=fmt, batch_size=batch_size,
                   fail_fast=fail_fast, quiet=quiet, glob=glob, recursive=recursive,
                   workers=workers, summary=False)
