"""Reading the fields a command needs out of a record, with errors that help.

Field names follow Hugging Face where a name exists: input_ids,
attention_mask, token_type_ids, inputs_embeds, hidden_states,
last_hidden_state, pixel_values, logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfm.core.errors import ItemError
from tfm.core.stream import Record

# which command makes which field, for "missing field" messages
MADE_BY = {
    "text": "a text line or a record with a text field",
    "input_ids": "tfm tokenize",
    "attention_mask": "tfm tokenize",
    "token_type_ids": "tfm tokenize",
    "inputs_embeds": "tfm embed",
    "hidden_states": "tfm posenc or tfm patchify --project",
    "last_hidden_state": "tfm encode",
    "q": "you (a float tensor)",
    "patches": "tfm patchify",
    "pixel_values": "tfm patchify",
}


def missing(record: Record, *names: str) -> ItemError:
    wanted = " or ".join(repr(n) for n in names)
    makers = sorted({MADE_BY[n] for n in names if n in MADE_BY})
    hint = f" (made by {', '.join(makers)})" if makers else ""
    have = ", ".join(record.fields) or "no fields"
    return ItemError(f"record lacks {wanted}{hint}; it has {have}", "missing-field")


def int_vector(record: Record, name: str, required: bool = True) -> np.ndarray | None:
    value = record.fields.get(name)
    if value is None:
        if required:
            raise missing(record, name)
        return None
    if isinstance(value, list) and not value:
        return np.zeros(0, dtype=np.int64)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iu":
        raise ItemError(f"field {name!r} must be a list of integers", "bad-type")
    if value.ndim != 1:
        raise ItemError(f"field {name!r} must be 1-D (T,), got shape {value.shape}", "bad-shape")
    return value.astype(np.int64, copy=False)


def float_tensor(record: Record, name: str, ndim: int | tuple[int, ...] = 2, required: bool = True,
                 shape_hint: str = "(T, D)") -> np.ndarray | None:
    """A float32 tensor field; a bare .npy array stands in for any name."""
    value = record.fields.get(name)
    if value is None and record.bare:
        value = record.fields.get("array")
    if value is None:
        if required:
            raise missing(record, name)
        return None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise ItemError(f"field {name!r} must be a float tensor {shape_hint}, got {kind}", "bad-type")
    if value.dtype.kind != "f":
        hint = " (in JSON write 1.0, not 1)" if value.dtype.kind in "iu" else ""
        raise ItemError(f"field {name!r} must hold floats {shape_hint}, got {value.dtype}{hint}", "bad-type")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if value.ndim not in dims:
        raise ItemError(f"field {name!r} must have shape {shape_hint}, got {value.shape}", "bad-shape")
    value = value.astype(np.float32, copy=False)
    if not np.isfinite(value).all():
        raise ItemError(f"field {name!r} contains NaN or Inf", "non-finite")
    return value


def text(record: Record, name: str = "text") -> str | None:
    value = record.fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ItemError(f"field {name!r} must be a string", "bad-type")
    return value


def passthrough(record: Record, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The record's fields minus the ones a stage consumes and replaces."""
    return {k: v for k, v in record.fields.items() if k not in drop and not (record.bare and k == "array")}
