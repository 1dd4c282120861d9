"""tfm models: the embedded models."""

from __future__ import annotations

from typing import Annotated

import typer


MAN = {
    "DESCRIPTION": """\
Lists the models embedded in tfm with their task, size, source and licence.
Any of these names can be given to --model; so can the path of a model folder
in the Hugging Face / Optimum ONNX export layout (config.json, tokenizer.json,
model.onnx or onnx/model.onnx), or a hub id such as
sentence-transformers/all-MiniLM-L6-v2, fetched once into the cache
($TFM_CACHE, else ~/.cache/tfm; $HF_ENDPOINT and $HF_TOKEN are honoured).""",
    "EXAMPLES": """\
tfm models
tfm models -f json | jq -r .name""",
}


def command(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (for people) or json (JSON Lines).")] = "table",
):
    """List the embedded models: name, task, size, source, licence."""
    from tfm.core import process

    def body() -> int:
        from tfm.core.catalog import list_models

        list_models(fmt)
        return 0

    raise typer.Exit(process.run("models", body))
