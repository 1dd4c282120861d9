"""The `tfm` program: a family of commands, one per piece of a Transformer."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Optional

import typer

# (command, module in tfm.cli or None while not built yet, one-line help for the planned ones)
COMMANDS: list[tuple[str, str | None, str]] = [
    ("tokenize", "tokenize", ""),
    ("embed", "embed", ""),
    ("posenc", "posenc", ""),
    ("attend", "attend", ""),
    ("encode", "encode", ""),
    ("translate", "translate", ""),
    ("patchify", "patchify", ""),
    ("classify", "classify", ""),
    ("show", "show", ""),
    ("taps", "taps", ""),
    ("models", "models", ""),
]

HELP = """\
Take a Transformer apart on the command line.

Each command is one stage of a real model; they read and write record streams
(JSON Lines or NumPy) and pipe together:

  echo "A cat sits on the mat." | tfm tokenize | tfm encode --pool mean

See tfm COMMAND --help, tfm(1) and tfm-stream(5).
"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tfm")
    except PackageNotFoundError:
        return "0+unknown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tfm {version()}")
        raise typer.Exit(0)


def _planned(name: str):
    def command() -> None:
        from tfm.core import process

        process.state.command = name
        process.error("not built yet in this version")
        raise typer.Exit(2)

    return command


def build_app() -> typer.Typer:
    app = typer.Typer(help=HELP, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"]})

    @app.callback()
    def root(
        version_: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                         help="Show the version and exit.")] = None,
        debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors (also TFM_DEBUG=1).")] = False,
    ) -> None:
        if debug:
            from tfm.core.process import state

            state.debug = True

    for name, module, short in COMMANDS:
        if module is None:
            app.command(name, help=f"{short} (not built yet)", add_help_option=True)(_planned(name))
            continue
        mod = importlib.import_module(f"tfm.cli.{module}")
        app.command(name, context_settings={"help_option_names": ["-h", "--help"]})(mod.command)
    return app


def main() -> None:
    import click

    command = typer.main.get_command(build_app())
    try:
        code = command.main(args=sys.argv[1:], prog_name="tfm", standalone_mode=False)
    except click.exceptions.UsageError as e:
        ctx = e.ctx
        name = ctx.command.name if ctx is not None and ctx.parent is not None else None
        prefix = f"tfm {name}" if name else "tfm"
        sys.stderr.write(f"{prefix}: error: {e.format_message()} (see --help)\n")
        code = 2
    except click.exceptions.Abort:
        code = 130
    except click.exceptions.Exit as e:
        code = e.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
