"""tfm taps: what can be tapped in a model."""

from __future__ import annotations

import typer

from tfm.cli import common as C

MAN = {
    "DESCRIPTION": """\
Lists the intermediate tensors of a model that --tap can expose (placeholder).""",
    "EXAMPLES": """\
tfm taps""",
}


def command(
    model: C.Model = None,
):
    """List the tensors of a model that --tap can expose."""
    from tfm.core import process

    def body() -> int:
        from tfm.core.errors import FatalError

        raise FatalError("not built yet")

    raise typer.Exit(process.run("taps", body))
