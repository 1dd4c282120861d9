"""Options that mean the same in every command, and the wiring of a stream command.

Only parsing lives in cli/; the work is in tfm.core.  Nothing heavy is imported
at module level so that `tfm --help` starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Callable, List, Optional

import typer

ENGINE = "Engine"
STREAM = "Input and output"

Inputs = Annotated[
    Optional[List[Path]],
    typer.Argument(help="Input files; none or - reads stdin.", show_default=False, metavar="[INPUT]..."),
]
Model = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Model folder, embedded model name (see `tfm models`) or hub id.",
                 rich_help_panel=ENGINE, show_default=False),
]
Device = Annotated[str, typer.Option("--device", help="Where to run: auto, cpu, cuda, tensorrt, rocm, dml, coreml, openvino.",
                                     rich_help_panel=ENGINE)]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the model (default: all cores).",
                                                min=1, rich_help_panel=ENGINE, show_default=False)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Records computed together.", min=1,
                                        rich_help_panel=ENGINE)]
Format = Annotated[str, typer.Option("--format", "-f", help="Output format: json (JSON Lines) or npy (NumPy stream).",
                                     rich_help_panel=STREAM)]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.",
                                                rich_help_panel=STREAM, show_default=False)]
FailFast = Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed record.", rich_help_panel=STREAM)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No warnings, progress or summary (errors still shown).",
                                     rich_help_panel=STREAM)]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Say which device runs the model.", rich_help_panel=ENGINE)]
Truncate = Annotated[bool, typer.Option("--truncate", help="Cut sequences longer than the model allows instead of failing.")]

FORMATS = ("json", "npy")


def check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> str:
    from tfm.core.errors import FatalError

    if fmt not in allowed:
        raise FatalError(f"--format must be one of {', '.join(allowed)}, not {fmt!r}")
    return fmt


def open_inputs(inputs: list[Path] | None, texts: list[str] | None = None):
    """(binary stream, name) pairs; `-` or nothing is stdin."""
    import io

    from tfm.core.errors import FatalError
    from tfm.core.process import say

    if texts:
        data = "".join(t.replace("\n", " ") + "\n" for t in texts).encode("utf-8")
        return [(io.BufferedReader(io.BytesIO(data)), "--text")]
    sources = []
    for path in inputs or [Path("-")]:
        if str(path) == "-":
            if sys.stdin is None:
                raise FatalError("no standard input")
            if sys.stdin.isatty():
                say("reading from the terminal (end with Ctrl-D)")
            sources.append((sys.stdin.buffer, "-"))
            continue
        try:
            sources.append((open(path, "rb"), str(path)))
        except OSError as e:
            raise FatalError(f"cannot read {path}: {e.strerror}") from None
    return sources


def open_output(output: Path | None, append: bool = False):
    from tfm.core.errors import FatalError

    if output is None or str(output) == "-":
        return sys.stdout.buffer
    try:
        return open(output, "ab" if append else "wb")
    except OSError as e:
        raise FatalError(f"cannot write {output}: {e.strerror}") from None


def stream(
    command: str,
    make_stage: Callable[[], object],
    *,
    inputs: list[Path] | None,
    output: Path | None,
    fmt: str,
    batch_size: int = 32,
    fail_fast: bool = False,
    quiet: bool = False,
    accept_text: bool = False,
    texts: list[str] | None = None,
    formats: tuple[str, ...] = FORMATS,
    row=None,
) -> None:
    """Run a record-mapping command end to end and exit with its status."""
    from tfm.core import process

    def body() -> int:
        from tfm.core.pipeline import run_stage
        from tfm.core.stream import RecordWriter, read_records

        check_format(fmt, formats)
        stage = make_stage()  # a bad model fails before the output file is touched
        writer = RecordWriter(open_output(output), fmt, row=row)
        records = read_records(open_inputs(inputs, texts), accept_text=accept_text)
        return run_stage(records, stage, writer, batch_size=batch_size, fail_fast=fail_fast)

    raise typer.Exit(process.run(command, body, quiet=quiet))


def engine(device: str, threads: int | None, verbose: bool):
    from tfm.core.engine import Engine, default_threads

    return Engine(device, threads if threads is not None else default_threads(), verbose)


Glob = Annotated[Optional[str], typer.Option("--glob", help="Only files whose name (or relative path) matches this pattern, e.g. '*.png'.", show_default=False)]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk sub-folders of folders given as input.")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="Threads decoding images ahead of the model (default: up to 4).", min=1, show_default=False)]


def image_stream(
    command: str,
    make_stage: Callable[[], tuple[object, object]],
    *,
    inputs: list[Path] | None,
    output: Path | None,
    fmt: str,
    formats: tuple[str, ...] = FORMATS,
    batch_size: int,
    fail_fast: bool,
    quiet: bool,
    glob: str | None,
    recursive: bool,
    workers: int | None,
    resume: bool = False,
    csv: tuple[list[str], Callable] | None = None,
    summary: bool = True,
) -> None:
    """Run an image command: paths in (files, folders, stdin), records out, progress and a summary on stderr."""
    from tfm.core import process

    def body() -> int:
        from tfm.core.errors import FatalError
        from tfm.core.pipeline import run_stage
        from tfm.core.progress import Progress
        from tfm.core.stream import RecordWriter
        from tfm.core.vision import decoded, done_paths, image_paths

        check_format(fmt, formats)
        stage, preprocess = make_stage()
        names = [str(p) for p in inputs] if inputs else None
        if (names is None or "-" in names) and sys.stdin is not None and sys.stdin.isatty():
            process.say("reading image paths from the terminal (end with Ctrl-D)")
        skip: set[str] = set()
        if resume:
            if output is None or str(output) == "-":
                raise FatalError("--resume needs --output FILE")
            if fmt == "npy":
                raise FatalError("--resume works with json or csv output")
            skip = done_paths(output, fmt)
        paths = list(image_paths(names, glob, recursive)) if names and "-" not in names else None
        total = None if paths is None else len(paths)
        if paths is None:
            paths = image_paths(names, glob, recursive)
        if skip:
            paths = (p for p in paths if p[0] not in skip)
            total = None if total is None else total - len(skip)
        appending = resume and output is not None and output.exists() and output.stat().st_size > 0
        stream = open_output(output, append=resume)
        columns, row = csv if csv else (None, None)
        writer = RecordWriter(stream, fmt, columns=columns, row=row, header=not appending)
        progress = Progress(total, "images", quiet=quiet or not summary)
        try:
            return run_stage(decoded(paths, preprocess, workers), stage, writer, batch_size=batch_size,
                             fail_fast=fail_fast, progress=progress)
        finally:
            progress.finish()

    raise typer.Exit(process.run(command, body, quiet=quiet))
