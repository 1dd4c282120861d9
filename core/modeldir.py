"""Model folders in the Hugging Face / Optimum export layout.

A model is a folder with ``config.json`` and ONNX graphs, either at the top
(``model.onnx``, as ``optimum-cli export onnx`` writes) or under ``onnx/`` (as
repositories that publish ONNX exports do), plus ``tokenizer.json``,
``preprocessor_config.json`` or ``generation_config.json`` as the task needs.
``--model`` takes such a folder, the name of an embedded model, or a hub id
(``org/name``) that is fetched once into the cache (see tfm.core.hub).
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from tfm.core.errors import FatalError

# config.json fields that must be sane integers if present: (low, high)
_CONFIG_LIMITS = {
    "hidden_size": (1, 1 << 16),
    "d_model": (1, 1 << 16),
    "num_attention_heads": (1, 1024),
    "num_hidden_layers": (1, 1024),
    "intermediate_size": (1, 1 << 20),
    "max_position_embeddings": (1, 1 << 20),
    "vocab_size": (1, 1 << 24),
    "type_vocab_size": (0, 1 << 16),
    "image_size": (1, 1 << 16),
    "patch_size": (1, 1 << 12),
    "num_channels": (1, 64),
    "encoder_layers": (1, 1024),
    "decoder_layers": (1, 1024),
}


class ModelDir:
    """A model folder: its config, graphs and tokenizer, checked before use."""

    def __init__(self, path: Path, name: str | None = None):
        self.path = path
        self.name = name or path.name
        if not path.is_dir():
            raise FatalError(f"model {self.name}: {path} is not a folder")

    @cached_property
    def config(self) -> dict[str, Any]:
        config = self.read_json("config.json", required=True)
        for key, (low, high) in _CONFIG_LIMITS.items():
            value = config.get(key)
            if value is None:
                continue
            if isinstance(value, list) and key == "image_size":
                value = max(value) if value else 0
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise FatalError(f"model {self.name}: config.json has {key} = {value!r}, expected {low}..{high}")
        heads, width = config.get("num_attention_heads"), config.get("hidden_size")
        if heads and width and width % heads:
            raise FatalError(f"model {self.name}: config.json hidden_size {width} is not divisible by {heads} heads")
        return config

    def read_json(self, filename: str, required: bool = False) -> dict[str, Any]:
        path = self.path / filename
        if not path.is_file():
            if required:
                raise FatalError(f"model {self.name}: {filename} is missing in {self.path}")
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise FatalError(f"model {self.name}: {filename} is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise FatalError(f"model {self.name}: {filename} must hold a JSON object")
        return data

    def onnx(self, filename: str = "model.onnx") -> Path:
        """The checked path of one ONNX graph of this model."""
        for candidate in (self.path / filename, self.path / "onnx" / filename):
            if candidate.is_file():
                check_onnx_file(candidate, self.path)
                return candidate
        raise FatalError(f"model {self.name}: no {filename} in {self.path} or its onnx/ folder")

    def has_onnx(self, filename: str) -> bool:
        return (self.path / filename).is_file() or (self.path / "onnx" / filename).is_file()

    @cached_property
    def tokenizer(self):
        from tfm.core.tokenizer import TextTokenizer

        path = self.path / "tokenizer.json"
        if not path.is_file():
            raise FatalError(f"model {self.name}: tokenizer.json is missing in {self.path}")
        return TextTokenizer.from_file(path, config=self.config, tokenizer_config=self.read_json("tokenizer_config.json"))

    @property
    def max_positions(self) -> int | None:
        return self.config.get("max_position_embeddings")


_checked: set[tuple] = set()


def check_onnx_file(path: Path, root: Path) -> None:
    """Refuse empty graphs and external data that points outside the model folder (once per file)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _checked:
        return
    _check_onnx_file(path, root)
    _checked.add(key)


def _check_onnx_file(path: Path, root: Path) -> None:
    size = path.stat().st_size
    if size == 0:
        raise FatalError(f"{path} is empty")
    # Only graphs that use external data carry a data_location; scanning for the
    # key's text first keeps the common case free of a full protobuf parse.
    with open(path, "rb") as f:
        blob = f.read()
    if b"location" not in blob:
        return
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:
        model = onnx.load_model_from_string(blob)
    except Exception as e:
        raise FatalError(f"{path} is not a valid ONNX model ({type(e).__name__})") from None
    base = root.resolve()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (path.parent / location)
        resolved = target.resolve()
        if os.path.isabs(location) or ".." in Path(location).parts or base not in resolved.parents:
            raise FatalError(f"{path}: external data {location!r} lies outside the model folder; refused")
        if target.is_symlink():
            raise FatalError(f"{path}: external data {location!r} is a symbolic link; refused")
        if not resolved.is_file():
            raise FatalError(f"{path}: external data {location!r} is missing")


def resolve(model: str | None, task: str = "feature-extraction") -> ModelDir:
    """A --model value (None: the task's embedded default) to a checked folder."""
    from tfm import models

    if model is None:
        name = models.DEFAULTS.get(task)
        if name is None:
            raise FatalError(f"no embedded model for {task}; give --model")
        model = name
    embedded = models.embedded()
    if model in embedded:
        return ModelDir(embedded[model], name=model)
    path = Path(model).expanduser()
    if path.exists():
        return ModelDir(path, name=model)
    if looks_like_hub_id(model):
        from tfm.core import hub

        return ModelDir(hub.fetch(model, task=task), name=model)
    known = ", ".join(embedded) or "none"
    raise FatalError(f"no model {model!r}: not a folder, not an embedded model ({known}), not a hub id")


def looks_like_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts) and not value.startswith(("/", "~"))
