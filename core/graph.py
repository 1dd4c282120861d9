"""Reading a Transformer's structure out of its exported ONNX graph, and cutting it.

Every stage of tfm runs a piece of the model's *own* graph: the piece between
two named places ("seams") in it.  The seams are found by structure, not by
initializer or node names, which differ between exporters:

* each self-attention block has one ``Softmax``; its output is the attention
  probabilities ``layers.L.attention.probs``;
* following it forward through probs @ V and the output projection reaches the
  *residual* ``Add``: the one Add whose other operand is not computed from the
  softmax.  That other operand is the layer's input ``layers.L.input``; the
  projection result is ``layers.L.attention.output``;
* the first tensor from there on that feeds another residual Add is the state
  after the attention sublayer, ``layers.L.attention.add_norm`` (post-LN models
  such as BERT normalise first; pre-LN models such as ViT do not);
* the word embedding is the ``Gather`` of a constant table by ``input_ids``.

``Cut`` then extracts the subgraph between seams, so that e.g. `tfm attend
--layer 3` runs exactly the nodes the model runs, with the model's weights,
on any onnxruntime device.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tfm.core.errors import FatalError

CONST_OPS = ("Cast", "Identity", "Constant")


@dataclass
class Layer:
    index: int
    input: str  # layers.L.input: the hidden state entering the layer
    probs: str  # layers.L.attention.probs: (B, H, T, T)
    attention_output: str  # layers.L.attention.output: projection result before the residual
    add_norm: str  # layers.L.attention.add_norm: state after residual (+ LayerNorm if post-LN)
    output: str | None = None  # layers.L.output


@dataclass
class Structure:
    """The seams of an encoder graph: tensor names by readable name."""

    layers: list[Layer]
    word_embeddings: str | None = None  # output of the Gather of input_ids
    word_table: str | None = None  # the (V, D) initializer
    position_table: str | None = None
    token_type_table: str | None = None
    post_ln: bool = True
    seams: dict[str, str] = field(default_factory=dict)

    def seam(self, name: str) -> str:
        try:
            return self.seams[name]
        except KeyError:
            raise FatalError(f"the model has no {name!r}; it has {', '.join(self.seams)}") from None


class Graph:
    """An ONNX model with the lookups that structure analysis needs."""

    def __init__(self, model, path: Path | None = None):
        import onnx

        self.model = model
        self.path = path
        g = model.graph
        self.nodes = list(g.node)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.initializers = {t.name: t for t in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.initializers]
        self.outputs = [o.name for o in g.output]
        self.order = {n.name or id(n): k for k, n in enumerate(self.nodes)}
        self._types = None
        self._onnx = onnx

    def is_constant(self, tensor: str, _depth: int = 0) -> bool:
        """True for initializers, Constants, and Casts/Identities of them (fp16 storage)."""
        if tensor in self.initializers or tensor == "":
            return True
        node = self.producer.get(tensor)
        if node is None or _depth > 4:
            return False
        if node.op_type == "Constant":
            return True
        return node.op_type in CONST_OPS and all(self.is_constant(i, _depth + 1) for i in node.input)

    def constant(self, tensor: str):
        """The value of a constant tensor as a numpy array (through Cast/Identity)."""
        import numpy as np
        from onnx import numpy_helper

        if tensor in self.initializers:
            return numpy_helper.to_array(self.initializers[tensor], base_dir=str(self.path.parent) if self.path else "")
        node = self.producer[tensor]
        if node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        value = self.constant(node.input[0])
        if node.op_type == "Cast":
            from onnx import helper

            to = next(a.i for a in node.attribute if a.name == "to")
            return value.astype(helper.tensor_dtype_to_np_dtype(to))
        return np.asarray(value)

    def ancestors(self, tensor: str, stop: set[str] | None = None) -> set[str]:
        """Every tensor `tensor` is computed from (constants excluded)."""
        seen: set[str] = set()
        todo = [tensor]
        stop = stop or set()
        while todo:
            t = todo.pop()
            if t in seen or t in stop:
                continue
            seen.add(t)
            node = self.producer.get(t)
            if node is not None:
                todo.extend(i for i in node.input if i and not self.is_constant(i))
        return seen

    def descendants(self, tensor: str) -> set[str]:
        seen: set[str] = set()
        todo = [tensor]
        while todo:
            t = todo.pop()
            for node in self.consumers.get(t, []):
                for o in node.output:
                    if o not in seen:
                        seen.add(o)
                        todo.append(o)
        return seen

    def node_index(self, node) -> int:
        return self.order[node.name or id(node)]

    def types(self) -> dict:
        """Inferred type protos of every tensor (for the inputs and outputs of cut graphs)."""
        if self._types is None:
            onnx = self._onnx
            try:
                inferred = onnx.shape_inference.infer_shapes(self.model, strict_mode=False)
            except Exception:
                inferred = self.model
            g = inferred.graph
            self._types = {v.name: v.type for v in list(g.value_info) + list(g.input) + list(g.output)}
            for t in g.initializer:
                self._types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
        return self._types


# ---------------------------------------------------------------------- structure


def _residual_add(g: Graph, start: str):
    """The first Add after `start` whose other operand does not depend on `start`."""
    below = g.descendants(start) | {start}
    frontier = sorted({g.node_index(n) for t in below for n in g.consumers.get(t, []) if n.op_type == "Add"})
    for k in frontier:
        node = g.nodes[k]
        a, b = node.input[0], node.input[1]
        if g.is_constant(a) or g.is_constant(b):
            continue
        inside = [x in below for x in (a, b)]
        if inside[0] != inside[1]:
            return node, (b if inside[0] else a), (a if inside[0] else b)
    return None


def _next_residual_state(g: Graph, start: str) -> tuple[str, object] | None:
    """The first tensor at or after `start` that feeds a residual Add (with something computed from it)."""
    candidates = [start] + sorted(g.descendants(start), key=lambda t: g.node_index(g.producer[t]))
    for t in candidates:
        below = g.descendants(t)
        for node in g.consumers.get(t, []):
            if node.op_type != "Add" or len(node.input) != 2:
                continue
            other = node.input[1] if node.input[0] == t else node.input[0]
            if other in below and not g.is_constant(other):
                return t, node
    return None


def analyse(g: Graph) -> Structure:
    softmaxes = [n for n in g.nodes if n.op_type == "Softmax"]
    if not softmaxes:
        raise FatalError("no Softmax in the graph: is it a Transformer with attention?")
    layers: list[Layer] = []
    post_ln = True
    for index, sm in enumerate(softmaxes):
        probs = sm.output[0]
        found = _residual_add(g, probs)
        if found is None:
            raise FatalError(f"cannot find the residual connection of attention block {index}")
        add, layer_input, attn_out = found
        nxt = _next_residual_state(g, add.output[0])
        if nxt is None:
            raise FatalError(f"cannot find the feed-forward block of layer {index}")
        mid = nxt[0]
        post_ln = mid != add.output[0]
        layers.append(Layer(index, layer_input, probs, attn_out, mid))
    for a, b in zip(layers, layers[1:]):
        a.output = b.input
    last = layers[-1]
    ffn_add = _next_residual_state(g, last.add_norm)[1]
    out_name = "last_hidden_state" if "last_hidden_state" in g.outputs else None
    last.output = out_name if post_ln and out_name else ffn_add.output[0]
    s = Structure(layers, post_ln=post_ln)
    _find_embeddings(g, s)
    seams = {}
    if s.word_embeddings:
        seams["embeddings.word"] = s.word_embeddings
    seams["embeddings.output"] = layers[0].input
    for layer in layers:
        p = f"layers.{layer.index}"
        seams.update({f"{p}.input": layer.input, f"{p}.attention.probs": layer.probs,
                      f"{p}.attention.output": layer.attention_output,
                      f"{p}.attention.add_norm": layer.add_norm, f"{p}.output": layer.output})
    seams["last_hidden_state"] = _final_state(g, layers[-1].output)
    s.seams = seams
    return s


def _final_state(g: Graph, last_output: str) -> str:
    """The encoder's last hidden state: a graph output of that name, else the final LayerNorm (pre-LN models)."""
    if "last_hidden_state" in g.outputs:
        return "last_hidden_state"
    norms = [n for n in g.consumers.get(last_output, []) if n.op_type == "LayerNormalization"]
    return norms[0].output[0] if len(norms) == 1 else last_output


def _find_embeddings(g: Graph, s: Structure) -> None:
    """The embedding tables: Gathers of constant (V, D) tables on the way to layer 0."""
    region = g.ancestors(s.layers[0].input)
    for node in g.nodes:
        if node.op_type != "Gather" or node.output[0] not in region or not g.is_constant(node.input[0]):
            continue
        table = g.initializers.get(_root(g, node.input[0]))
        if table is None or len(table.dims) != 2:
            continue
        indices = node.input[1]
        while indices in g.producer and g.producer[indices].op_type in ("Cast", "Identity"):
            indices = g.producer[indices].input[0]
        sources = {t for t in g.ancestors(node.input[1]) if t in g.inputs}
        if indices == "input_ids" and s.word_embeddings is None:
            s.word_embeddings, s.word_table = node.output[0], node.input[0]
        elif "token_type_ids" in sources:
            s.token_type_table = node.input[0]
        elif s.position_table is None:  # indices made from a range or position_ids
            s.position_table = node.input[0]


def _root(g: Graph, tensor: str) -> str:
    while tensor not in g.initializers and tensor in g.producer and g.producer[tensor].op_type in CONST_OPS:
        tensor = g.producer[tensor].input[0]
    return tensor


# ---------------------------------------------------------------------- cutting


def cut(g: Graph, inputs: list[str], outputs: list[str]):
    """The subgraph computing `outputs` from the tensors `inputs` (plus what graph inputs it still needs).

    Returns (model, names of its inputs).
    """
    onnx = g._onnx
    stop = set(inputs)
    needed_nodes: set[int] = set()
    used: set[str] = set()
    todo = list(outputs)
    seen: set[str] = set()
    graph_inputs: list[str] = []
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        used.add(t)
        if t in stop or t in g.initializers or t == "":
            continue
        if t in g.inputs:
            graph_inputs.append(t)
            continue
        node = g.producer.get(t)
        if node is None:
            raise FatalError(f"tensor {t!r} has no producer in the graph")
        k = g.node_index(node)
        if k not in needed_nodes:
            needed_nodes.add(k)
            todo.extend(node.input)
    types = g.types()
    cut_inputs = [t for t in inputs if t in used]
    new_inputs = [_value_info(onnx, t, types, dynamic=True) for t in cut_inputs + sorted(set(graph_inputs))]
    new_outputs = [_value_info(onnx, t, types) for t in outputs]
    nodes = [g.nodes[k] for k in sorted(needed_nodes)]
    inits = [g.initializers[t] for t in sorted(used) if t in g.initializers]
    graph = onnx.helper.make_graph(nodes, "tfm-cut", new_inputs, new_outputs, initializer=inits)
    model = onnx.helper.make_model(graph, opset_imports=g.model.opset_import, ir_version=g.model.ir_version)
    return model, [v.name for v in new_inputs]


def _value_info(onnx, name: str, types: dict, dynamic: bool = False):
    t = types.get(name)
    if t is None or not t.HasField("tensor_type"):
        raise FatalError(f"cannot tell the type of tensor {name!r}")
    elem = t.tensor_type.elem_type
    dims = None
    if t.tensor_type.HasField("shape"):
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in t.tensor_type.shape.dim]
        if dynamic:  # a seam's batch and sequence sizes are free; its width is fixed
            dims = [f"d{k}" if k < len(dims) - 1 else dims[-1] for k in range(len(dims))]
    return onnx.helper.make_tensor_value_info(name, elem, dims)


# ---------------------------------------------------------------------- loading and caching


@lru_cache(maxsize=8)
def load(path: Path) -> Graph:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as e:
        raise FatalError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    return Graph(model, path)


@lru_cache(maxsize=8)
def structure(path: Path) -> Structure:
    return analyse(load(path))


def file_key(path: Path, *extra) -> str:
    st = path.stat()
    return hashlib.sha256(repr((str(path.resolve()), st.st_size, st.st_mtime_ns, extra)).encode()).hexdigest()[:24]


@lru_cache(maxsize=8)
def seams(path: Path) -> dict:
    """Seam name -> tensor name, plus table facts; cached on disk next to the cut graphs."""
    import json

    file = cache_dir() / "graphs" / f"{file_key(path, 'seams', 4)}.json"
    if file.is_file():
        try:
            return json.loads(file.read_text())
        except ValueError:
            pass
    g = load(path)
    s = structure(path)
    info = {"inputs": g.inputs, "outputs": g.outputs, "seams": s.seams, "post_ln": s.post_ln, "layers": len(s.layers), "word_table": s.word_table,
            "position_table": s.position_table, "token_type_table": s.token_type_table}
    if s.word_table:
        info["vocab_size"] = int(g.constant(s.word_table).shape[0])
    write_atomic(file, json.dumps(info).encode())
    return info


def write_atomic(file: Path, blob: bytes) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.parent / f".{file.name}.{os.getpid()}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, file)
    except OSError:
        pass  # a cache we cannot write only costs time


def cache_dir() -> Path:
    base = os.environ.get("TFM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tfm")
    return Path(base)


def cut_cached(path: Path, inputs: list[str], outputs: list[str]) -> tuple[bytes, list[str], str]:
    """Serialized subgraph (cached on disk per model file and cut), its input names, cache key."""
    key = file_key(path, "cut", inputs, outputs)
    folder = cache_dir() / "graphs"
    file, names_file = folder / f"{key}.onnx", folder / f"{key}.inputs"
    if file.is_file() and names_file.is_file():
        return file.read_bytes(), names_file.read_text().split("\n"), key
    model, names = cut(load(path), inputs, outputs)
    blob = model.SerializeToString()
    write_atomic(names_file, "\n".join(names).encode())
    write_atomic(file, blob)
    return blob, names, key
