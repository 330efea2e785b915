"""Caffe's bvlc_alexnet from the ONNX model zoo (``bvlcalexnet-12.onnx``) -> the builder's ``caffe`` network.

The graph is read with ``onnx`` (no runtime), never assumed:

* the input size is the graph's declared input (the zoo declares 1x3x224x224, while
  Caffe trained on 227x227 crops: onnx/models#7); the network is built for it;
* the operators must form one chain from the input, in the order of the builder's
  ``caffe`` arrangement (:func:`alexnet.net.model.build_model`): Conv, Relu, LRN,
  MaxPool, ..., a Reshape or Flatten, Gemm, Relu, Gemm, Relu, Gemm, then an optional
  Softmax; Dropout and Identity are skipped (they do nothing at inference);
* every node's attributes are compared with the builder's layer: convolution kernel,
  strides, pads, dilations and groups; the LRN's size, alpha, beta and bias (ONNX,
  like Caffe, divides alpha by size); max-pooling's kernel and strides, and its output
  size from the graph's own pads and ``ceil_mode`` (Caffe's rounding up appears either
  as ``ceil_mode = 1`` or as extra bottom/right pads; both equal the builder's
  rounding up when the sizes agree and no pad comes first); Gemm's ``alpha``, ``beta``
  and ``transB``;
* the initialisers (read with ``onnx.numpy_helper``) must have the builder's shapes.

The first node or tensor that differs is named in a one-line error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.net.lrn import LocalResponseNorm
from alexnet.net.model import ModelSpec, build_model, spatial_sizes
from alexnet.published import CAFFE, ONNX_LRN_DEFAULTS
from alexnet.weights.runs import Imported, first_sentence

WHAT = "BVLC AlexNet"
#: Operators that do nothing at inference time.
SKIPPED = ("Dropout", "Identity")
#: The builder's module types -> the ONNX operators that may stand for them.
OPS: dict[type, tuple[str, ...]] = {
    nn.Conv2d: ("Conv",), nn.ReLU: ("Relu",), LocalResponseNorm: ("LRN",), nn.MaxPool2d: ("MaxPool",),
    nn.Flatten: ("Reshape", "Flatten"), nn.Linear: ("Gemm",),
}


def load_graph(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path} does not exist", key="file")
    try:
        import onnx
    except ImportError:
        raise UserError("reading ONNX files needs the onnx package (pip install onnx)") from None
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError, missing external data, ...
        first = first_sentence(err)
        raise UserError(f"{path} is not a readable ONNX model (truncated, or another format?): "
                        f"{first}") from None
    if not model.graph.node:
        raise UserError(f"{path} is not a readable ONNX model: its graph has no nodes")
    return model


class Graph:
    """The parts of an ONNX graph the importer reads: tensors by name, the input, attributes."""

    def __init__(self, model: Any, path: Path) -> None:
        from onnx import numpy_helper

        self.model, self.path, self.graph = model, path, model.graph
        self.tensors: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.tensors[node.output[0]] = numpy_helper.to_array(a.t)
        inputs = [i for i in self.graph.input if i.name not in self.tensors]
        if len(inputs) != 1:
            raise UserError(f"{path}: the graph has {len(inputs)} data inputs; {WHAT} has one (the image)")
        self.input = inputs[0]

    def input_size(self) -> int:
        dims = self.input.type.tensor_type.shape.dim
        values = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if len(values) != 4 or values[1] != 3:
            raise UserError(f"{self.path}: input {self.input.name} has shape {values}; {WHAT} takes (N, 3, H, W)")
        if values[2] is None or values[3] is None:
            raise UserError(f"{self.path}: input {self.input.name} does not declare its height and width")
        if values[2] != values[3]:
            raise UserError(f"{self.path}: input {self.input.name} is {values[2]}x{values[3]}; "
                            f"{WHAT} takes square images")
        return int(values[2])

    def tensor(self, node: Any, index: int, what: str) -> np.ndarray:
        if index >= len(node.input) or not node.input[index]:
            raise UserError(f"{self.path}: node {label(node)} has no {what}")
        name = node.input[index]
        if name not in self.tensors:
            raise UserError(f"{self.path}: {what} {name} of node {label(node)} is not an initialiser")
        return self.tensors[name]


def label(node: Any) -> str:
    return f"'{node.name or node.output[0]}' ({node.op_type})"


def attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _chain(graph: Graph) -> list[Any]:
    """The graph's nodes from the input to the end, as one chain (Dropout/Identity/Constant left out)."""
    current = graph.input.name
    nodes = []
    for node in graph.graph.node:
        if node.op_type == "Constant":
            continue
        if not node.input or node.input[0] != current:
            raise UserError(f"{graph.path}: node {label(node)} does not read the output of the node before it "
                            f"({current}); {WHAT} is one chain of layers")
        current = node.output[0]
        if node.op_type not in SKIPPED:
            nodes.append(node)
    return nodes


def _differs(graph: Graph, node: Any, layer: str, what: str, found: Any, expected: Any) -> UserError:
    return UserError(f"{graph.path}: node {label(node)} ({layer}) has {what} {found}; {WHAT} has {expected}")


def _conv(graph: Graph, node: Any, layer: str, conv: nn.Conv2d, size: int) -> tuple[dict[str, Tensor], int]:
    a = attributes(node)
    w = graph.tensor(node, 1, "weight")
    expected_w = tuple(conv.weight.shape)
    if tuple(w.shape) != expected_w:
        raise _differs(graph, node, layer, "weights of shape", tuple(w.shape), expected_w)
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    checks = (("kernel", tuple(a.get("kernel_shape", w.shape[2:])), (k, k)),
              ("strides", tuple(a.get("strides", (1, 1))), (s, s)),
              ("pads", tuple(a.get("pads", (0, 0, 0, 0))), (p, p, p, p)),
              ("dilations", tuple(a.get("dilations", (1, 1))), (1, 1)),
              ("group", a.get("group", 1), conv.groups))
    for what, found, expected in checks:
        if found != expected:
            raise _differs(graph, node, layer, what, found, expected)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"", ""):
        raise _differs(graph, node, layer, "auto_pad", a["auto_pad"], "explicit pads")
    bias = graph.tensor(node, 2, "bias") if len(node.input) > 2 and node.input[2] else np.zeros(expected_w[0])
    if bias.size != expected_w[0]:
        raise _differs(graph, node, layer, "a bias of shape", tuple(bias.shape), (expected_w[0],))
    out = (size + 2 * p - k) // s + 1
    return {f"{layer}.weight": _tensor(w), f"{layer}.bias": _tensor(bias.reshape(-1))}, out


def _pool(graph: Graph, node: Any, layer: str, pool: nn.MaxPool2d, size: int, expected: int) -> int:
    a = attributes(node)
    k, s = pool.kernel_size, pool.stride
    pads = tuple(a.get("pads", (0, 0, 0, 0)))
    checks = (("kernel", tuple(a.get("kernel_shape", ())), (k, k)), ("strides", tuple(a.get("strides", (1, 1))), (s, s)),
              ("dilations", tuple(a.get("dilations", (1, 1))), (1, 1)), ("storage_order", a.get("storage_order", 0), 0))
    for what, found, want in checks:
        if found != want:
            raise _differs(graph, node, layer, what, found, want)
    if len(pads) != 4 or pads[0] or pads[1] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"", ""):
        raise _differs(graph, node, layer, "pads", pads, "none at the top and left")
    rounding = math.ceil if a.get("ceil_mode", 0) else math.floor
    out_h = int(rounding((size + pads[2] - k) / s)) + 1
    out_w = int(rounding((size + pads[3] - k) / s)) + 1
    if (out_h, out_w) != (expected, expected):
        raise UserError(f"{graph.path}: node {label(node)} ({layer}) pools {size}x{size} to {out_h}x{out_w} (pads "
                        f"{list(pads)}, ceil_mode {a.get('ceil_mode', 0)}); {WHAT} to {expected}x{expected} "
                        f"(Caffe rounds up)")
    return expected


def _flatten(graph: Graph, node: Any, features: int) -> None:
    if node.op_type == "Flatten":
        axis = attributes(node).get("axis", 1)
        if axis != 1:
            raise _differs(graph, node, "flatten", "axis", axis, 1)
        return
    given = attributes(node).get("shape")  # opsets before 5 gave the shape as an attribute
    target = given if given is not None and len(node.input) < 2 else graph.tensor(node, 1, "target shape")
    shape = [int(v) for v in np.asarray(target).reshape(-1)]
    if not (len(shape) == 2 and (shape[1] == features or shape[1] == -1 and shape[0] in (0, 1))):
        raise _differs(graph, node, "flatten", "target shape", shape, f"(batch, {features})")


def _gemm(graph: Graph, node: Any, layer: str, fc: nn.Linear) -> dict[str, Tensor]:
    a = attributes(node)
    for what, want in (("alpha", 1.0), ("beta", 1.0), ("transA", 0)):
        if not math.isclose(float(a.get(what, want)), want):
            raise _differs(graph, node, layer, what, a[what], want)
    w = graph.tensor(node, 1, "weight")
    w = w if a.get("transB", 0) else w.T  # Gemm computes A @ B: B is (in, out) unless transposed
    if tuple(w.shape) != tuple(fc.weight.shape):
        raise _differs(graph, node, layer, "weights of shape (out, in)", tuple(w.shape), tuple(fc.weight.shape))
    bias = graph.tensor(node, 2, "bias") if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0])
    if bias.size != w.shape[0]:
        raise _differs(graph, node, layer, "a bias of shape", tuple(bias.shape), (w.shape[0],))
    return {f"{layer}.weight": _tensor(w), f"{layer}.bias": _tensor(bias.reshape(-1))}


def _lrn(graph: Graph, node: Any, layer: str, lrn: LocalResponseNorm) -> None:
    a = attributes(node)
    for what, want in (("size", lrn.n), ("alpha", lrn.alpha), ("beta", lrn.beta), ("bias", lrn.k)):
        found = a.get(what, getattr(ONNX_LRN_DEFAULTS, what, None))  # size has no default
        if found is None or not math.isclose(float(found), float(want), rel_tol=1e-5):
            raise _differs(graph, node, layer, what, found, want)


def _tensor(array: np.ndarray) -> Tensor:
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"initialiser of dtype {array.dtype} where {WHAT} has floating-point weights")
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


def read_bvlc_onnx(path: Path) -> Imported:
    """The ONNX graph at ``path`` as the builder's ``caffe`` network, checked node by node."""
    graph = Graph(load_graph(path), path)
    size = graph.input_size()
    gemms = [n for n in graph.graph.node if n.op_type == "Gemm"]
    num_classes = 1000
    if gemms and len(gemms[-1].input) > 1 and gemms[-1].input[1] in graph.tensors:
        w = graph.tensors[gemms[-1].input[1]]
        if w.ndim == 2:
            num_classes = int(w.shape[0] if attributes(gemms[-1]).get("transB", 0) else w.shape[1])
    if num_classes < 2:
        raise UserError(f"{path}: the last Gemm has {num_classes} output; {WHAT} classifies into several classes")
    spec = ModelSpec(arch=CAFFE.arch, num_classes=num_classes, input_size=size)
    with torch.device("meta"):  # the builder's layers, for their geometry and shapes only
        model = build_model(spec)
    layers = [(name, m) for name, m in model.named_children() if not isinstance(m, nn.Dropout)]
    pooled = dict(spatial_sizes(spec))
    nodes = _chain(graph)
    state: dict[str, Tensor] = {}
    current, channels = size, 3
    for i, (name, module) in enumerate(layers):
        ops = OPS[type(module)]
        if i >= len(nodes):
            raise UserError(f"{path}: the graph ends after {len(nodes)} layers; {WHAT} continues with "
                            f"{ops[0]} ({name})")
        node = nodes[i]
        if node.op_type not in ops:
            raise UserError(f"{path}: node {i + 1} {label(node)} is {node.op_type} where {WHAT} has "
                            f"{' or '.join(ops)} ({name})")
        if isinstance(module, nn.Conv2d):
            weights, current = _conv(graph, node, name, module, current)
            state.update(weights)
            channels = module.out_channels
        elif isinstance(module, nn.MaxPool2d):
            current = _pool(graph, node, name, module, current, pooled[name])
        elif isinstance(module, LocalResponseNorm):
            _lrn(graph, node, name, module)
        elif isinstance(module, nn.Flatten):
            _flatten(graph, node, channels * current * current)
        elif isinstance(module, nn.Linear):
            state.update(_gemm(graph, node, name, module))
    rest = nodes[len(layers):]
    if rest and rest[0].op_type == "Softmax":
        rest = rest[1:]
    if rest:
        raise UserError(f"{path}: node {label(rest[0])} follows fc8; {WHAT} ends with fc8 and a softmax")
    model_inputs = [o.name for o in graph.graph.output]
    details = {
        "input": {"name": graph.input.name, "size": size}, "outputs": model_inputs,
        "producer": f"{graph.model.producer_name} {graph.model.producer_version}".strip(),
        "opset": [int(o.version) for o in graph.model.opset_import if o.domain in ("", "ai.onnx")][:1],
        "nodes": [n.name or n.output[0] for n in nodes],
        "ends_with_softmax": bool(nodes[len(layers):]),
        "conv1_output": dict(spatial_sizes(spec))["conv1"],
    }
    return Imported(spec, state, details)
