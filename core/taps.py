"""Taps: any intermediate tensor of an ONNX model, as an extra output with a readable name.

An exported graph exposes only its final outputs.  A tap adds an internal
tensor to the graph's outputs (with the ``onnx`` package), and the session is
built without graph fusions, so the tensor exists exactly as the exporter
wrote it.  The final outputs stay what they were.

Every tappable tensor (a float tensor with a batch axis) gets a stable,
readable name: the seam names of tfm.core.graph where one applies
(``layers.3.attention.probs``, ``layers.3.output``), otherwise the block it
lives in, its operator type and its rank among those, e.g.
``layers.3.gelu.0``, ``embeddings.add.1``, ``head.matmul.0``.

Patterns (``--tap``, repeatable) are globs matched against those names
(``*`` stays within one dot-separated part, ``**`` crosses parts), against the raw tensor names, and against operator types
(``Softmax`` taps every Softmax output); two shortcuts cover the common asks:
``attentions`` (every layer's attention probabilities, (H, T, T) each) and
``hidden-states`` (the embeddings' output and every layer's output, as in
Hugging Face's output_hidden_states).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tfm.core import graph
from tfm.core.errors import FatalError

SHORTCUTS = {
    "attentions": ["layers.*.attention.probs"],
    "hidden-states": ["embeddings.output", "layers.*.output"],
}


@lru_cache(maxsize=8)
def catalog(path: Path) -> list[dict]:
    """Every tappable tensor: name, tensor, op, shape; cached on disk."""
    file = graph.cache_dir() / "graphs" / f"{graph.file_key(path, 'taps', 1)}.json"
    if file.is_file():
        try:
            return json.loads(file.read_text())
        except ValueError:
            pass
    g = graph.load(path)
    s = graph.structure(path)
    types = g.types()
    aliases: dict[str, list[str]] = {}  # a tensor can be two seams: layers.2.output is layers.3.input
    for name, tensor in s.seams.items():
        aliases.setdefault(tensor, []).append(name)
    # which block each node belongs to: before layer 0, layer L, or the head after the last layer
    starts = [g.node_index(g.producer[layer.input]) if layer.input in g.producer else -1 for layer in s.layers]
    last = s.layers[-1].output
    end = g.node_index(g.producer[last]) if last in g.producer else len(g.nodes)
    counters: dict[tuple[str, str], int] = {}
    out = []
    for k, node in enumerate(g.nodes):
        block = "embeddings"
        for index, start in enumerate(starts):
            if k > start:
                block = f"layers.{index}"
        if k > end:
            block = "head"
        for tensor in node.output:
            t = types.get(tensor)
            if t is None or not t.HasField("tensor_type") or t.tensor_type.elem_type != 1:
                continue
            dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.tensor_type.shape.dim]
            if len(dims) < 2 or isinstance(dims[0], int) or g.is_constant(tensor):
                continue  # no batch axis: a weight or a shape computation
            op = node.op_type.lower()
            key = (block, op)
            rank = counters.get(key, 0)
            counters[key] = rank + 1
            names = aliases.get(tensor, []) + [f"{block}.{op}.{rank}"]
            out.append({"name": names[0], "names": names, "tensor": tensor, "op": node.op_type, "shape": dims})
    graph.write_atomic(file, json.dumps(out).encode())
    return out


def select(path: Path, patterns: list[str]) -> dict[str, dict]:
    """Readable name -> catalog entry for the patterns; an unmatched pattern is an error."""
    entries = catalog(path)
    chosen: dict[str, dict] = {}
    for pattern in patterns:
        globs = SHORTCUTS.get(pattern, [pattern])
        hit = False
        for entry in entries:
            for p in globs:
                named = [n for n in entry["names"] if _match(n, p)]
                if named or entry["tensor"] == p or entry["op"] == p:
                    chosen[named[0] if named else entry["name"]] = entry
                    hit = True
                    break
        if not hit:
            raise FatalError(f"--tap {pattern!r} matches nothing in {path.name}; `tfm taps --model ...` lists what can be tapped")
    return chosen


@lru_cache(maxsize=256)
def _pattern(glob: str):
    import re

    parts = re.split(r"(\*\*|\*|\?)", glob)
    regex = "".join({"**": ".*", "*": "[^.]*", "?": "[^.]"}.get(p, re.escape(p)) for p in parts)
    return re.compile(regex + r"\Z")


def _match(name: str, glob: str) -> bool:
    return _pattern(glob).match(name) is not None


def tapped_graph(path: Path, tensors: list[str]) -> tuple[bytes, str]:
    """The model with `tensors` added to its outputs (cached on disk per model and tap set)."""
    key = graph.file_key(path, "tapped", sorted(tensors))
    file = graph.cache_dir() / "graphs" / f"{key}.onnx"
    if file.is_file():
        return file.read_bytes(), key
    import onnx

    g = graph.load(path)
    model = onnx.ModelProto()
    model.CopyFrom(g.model)
    types = g.types()
    present = {o.name for o in model.graph.output}
    for tensor in tensors:
        if tensor not in present:
            model.graph.output.append(onnx.helper.make_value_info(tensor, types[tensor]))
    blob = model.SerializeToString()
    graph.write_atomic(file, blob)
    return blob, key


def sequence_axes(run, tensors: list[str], make_feed) -> dict[str, list[int]]:
    """Which axes of each tapped tensor follow the sequence length, found by running two lengths.

    Shapes inferred from the graph are often symbolic everywhere (heads too), so
    they cannot tell a heads axis of 12 from a sequence of 12 tokens; two probe
    runs with different lengths can.
    """
    a = run(tensors, make_feed(3))
    b = run(tensors, make_feed(5))
    return {t: [k for k, (x, y) in enumerate(zip(u.shape, v.shape)) if k > 0 and x != y]
            for t, u, v in zip(tensors, a, b)}


def strip(arr, axes: list[int], length: int):
    """One record's part of a batched tap (batch axis already taken): its sequence axes cut to its length."""
    import numpy as np

    index = tuple(slice(0, length) if k + 1 in axes else slice(None) for k in range(arr.ndim))
    return np.ascontiguousarray(arr[index])


def list_taps(model, pattern: str, fmt: str) -> None:
    """What `tfm taps` prints: one line per tappable tensor."""
    import sys

    if fmt not in ("table", "json"):
        raise FatalError("--format must be table or json")
    path = model.onnx()
    names = set(select(path, [pattern])) if pattern != "**" else None
    rows = [e for e in catalog(path) if names is None or any(n in names for n in e["names"])]
    if fmt == "json":
        for e in rows:
            sys.stdout.write(json.dumps({"name": e["name"], "aliases": e["names"][1:], "op": e["op"],
                                         "shape": e["shape"], "tensor": e["tensor"]}) + "\n")
        return
    width = max(len(e["name"]) for e in rows)
    for e in rows:
        shape = "(" + ", ".join(str(d) for d in e["shape"]) + ")"
        also = f"  = {', '.join(e['names'][1:-1])}" if len(e["names"]) > 2 else ""
        sys.stdout.write(f"{e['name']:<{width}}  {e['op']:<18} {shape}{also}\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------ decoder graphs (translate)

CROSS = "decoder.layers.{}.cross_attention.probs"


def _cross_softmaxes(graph) -> list[str]:
    """Softmax outputs of a decoder graph (or If branch) whose keys come from the encoder, in layer order.

    The Softmax of cross-attention scores Q·Kᵀ where K is computed from the
    encoder (its hidden states, or their cached keys) and not from the
    decoder's own tokens; self-attention keys always depend on input_ids.
    """
    producer = {o: n for n in graph.node for o in n.output}

    def depends_on_tokens(tensor: str, seen: set) -> bool:
        stack = [tensor]
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            if t == "input_ids" or (t.startswith("past_key_values.") and ".decoder." in t):
                return True
            node = producer.get(t)
            if node is not None and node.op_type not in ("Shape", "Size"):  # sizes are not values
                stack.extend(i for i in node.input if i)
        return False

    found = []
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        scores = node.input[0]
        while scores in producer and producer[scores].op_type in ("Add", "Mul", "Div", "Where", "Cast"):
            scores = producer[scores].input[0]
        matmul = producer.get(scores)
        if matmul is None or matmul.op_type != "MatMul":
            continue
        if not depends_on_tokens(matmul.input[1], set()):
            found.append(node.output[0])
    return found


def tapped_decoder(path: Path, patterns: list[str]) -> tuple[bytes | None, list[str]]:
    """A decoder graph with its cross-attention probabilities as extra outputs named decoder.layers.L...."""
    import onnx

    globs = [g for p in patterns for g in ({"attentions": ["decoder.layers.*.cross_attention.probs"],
                                           "cross-attentions": ["decoder.layers.*.cross_attention.probs"]}.get(p, [p]))]
    model = onnx.load(str(path))
    ifs = [n for n in model.graph.node if n.op_type == "If"]
    graphs = [a.g for n in ifs for a in n.attribute if a.name in ("then_branch", "else_branch")] or [model.graph]
    per_graph = [_cross_softmaxes(g) for g in graphs]
    layers = len(per_graph[0])
    if layers == 0 or any(len(p) != layers for p in per_graph):
        raise FatalError(f"cannot find the cross-attention of {path.name}")
    names = [CROSS.format(k) for k in range(layers)]
    chosen = [k for k, n in enumerate(names) if any(_match(n, g) for g in globs)]
    unmatched = [p for p in globs if not any(_match(n, p) for n in names)]
    if unmatched:
        raise FatalError(f"--tap {unmatched[0]!r} matches nothing in translate; it can tap "
                         "decoder.layers.L.cross_attention.probs (or: attentions)")
    f = onnx.TensorProto.FLOAT
    for g, tensors in zip(graphs, per_graph):
        for k in chosen:
            g.output.append(onnx.helper.make_tensor_value_info(tensors[k], f, None))
    for node in ifs:
        for k in chosen:
            node.output.append(names[k])
    if not ifs:  # a plain graph: rename by an Identity so the output has the readable name
        for k in chosen:
            model.graph.node.append(onnx.helper.make_node("Identity", [per_graph[0][k]], [names[k]]))
    for k in chosen:
        model.graph.output.append(onnx.helper.make_tensor_value_info(names[k], f, None))
    return model.SerializeToString(), [names[k] for k in chosen]
