"""tfm classify: ViT image classification over files and folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Classifies images with a Vision Transformer (any Optimum image-classification
export; the default is the embedded vit-digits model). Images are preprocessed
as the model's preprocessor_config.json says, batched (--batch-size) and run
through the model; decoding happens on worker threads ahead of the model.

One record per image, in input order: `path`, `labels` (the --top-k best,
names from config.json's id2label) and `scores` (their softmax
probabilities), and `logits` with --logits. --format csv writes
path,label_1,score_1,...,error for spreadsheets.

--examples DIR classifies by nearest class prototype instead, for classes the
model was never trained on: DIR has one sub-folder per class with a few images
each; a prototype is the mean of the L2-normalised [CLS] vectors (the final
hidden state of the [CLS] token) of a class's images, and `scores` are cosine
similarities to the prototypes.

Unreadable images get an error record and a line on stderr, the run goes on,
and the exit status is 1 at the end; --fail-fast stops at the first. With
--output FILE --resume, images already in FILE are skipped and a cut-off last
line is repaired, so an interrupted run over a large folder picks up where it
stopped. A progress line (images/s, ETA) is shown when stderr is a terminal,
and a summary at the end.""",
    "EXAMPLES": """\
tfm classify digits/ --top-k 3
find photos -name '*.jpg' | tfm classify --model path/to/vit-export --format csv -o labels.csv
tfm classify --model path/to/vit-export -o out.jsonl --resume big-folder/
tfm classify --examples my-classes/ new-images/""",
}


def command(
    inputs: C.Inputs = None,
    model: C.Model = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many labels per image.", min=1)] = 5,
    logits: Annotated[bool, typer.Option("--logits", help="Also write the raw logits.")] = False,
    examples: Annotated[Optional[Path], typer.Option("--examples", help="Folder with one sub-folder of example images per class: classify by nearest prototype.", show_default=False)] = None,
    tap: Annotated[Optional[List[str]], typer.Option("--tap", help="Add intermediate tensors (see tfm taps), e.g. attentions.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="With --output: skip images already there, repair a cut-off last line.")] = False,
    glob: C.Glob = None,
    recursive: C.Recursive = True,
    workers: C.Workers = None,
    device: C.Device = "auto",
    threads: C.Threads = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json (JSON Lines), npy (NumPy stream) or csv.", rich_help_panel=C.STREAM)] = "json",
    output: C.Output = None,
    batch_size: C.BatchSize = 32,
    fail_fast: C.FailFast = False,
    quiet: C.Quiet = False,
    verbose: C.Verbose = False,
):
    """ViT image classification over files and folders."""

    def stage():
        from tfm.core.modeldir import resolve
        from tfm.core.vision import ClassifyStage, preprocessor

        m = resolve(model, task="image-classification")
        pre = preprocessor(m, None)
        s = ClassifyStage(m, C.engine(device, threads, verbose), top_k=top_k, logits=logits, taps=tap,
                          examples=examples, preprocess=pre)
        return s, pre

    from tfm.core.vision import csv_columns, csv_row

    C.image_stream("classify", stage, inputs=inputs, output=output, fmt=fmt, formats=("json", "npy", "csv"),
                   batch_size=batch_size, fail_fast=fail_fast, quiet=quiet, glob=glob, recursive=recursive,
                   workers=workers, resume=resume, csv=(csv_columns(top_k), lambda f: csv_row(f, top_k)))
