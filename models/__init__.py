"""Models embedded in tfm: one folder each, in the Hugging Face / Optimum layout.

Each folder holds ``tfm-model.json``: name, task, source, licence, export
versions and the sha256 of every shipped file.  The recipes that rebuild them
live in ``models/recipes/`` (they need torch; tfm itself never does).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# the model each kind of command uses when --model is not given
DEFAULTS = {
    "feature-extraction": "all-MiniLM-L6-v2",
    "image-classification": "vit-digits",
    "text2text-generation": "marian-en-zh",
}


def embedded() -> dict[str, Path]:
    """Embedded model names and their folders."""
    out = {}
    for manifest in sorted(HERE.glob("*/tfm-model.json")):
        out[manifest.parent.name] = manifest.parent
    return out


def manifest(folder: Path) -> dict:
    return json.loads((folder / "tfm-model.json").read_text(encoding="utf-8"))
