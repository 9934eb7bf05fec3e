"""Receptive fields of convolutional networks (Araujo, Norris & Sim, Distill 2019).

For a single path of layers ``l = 1..L`` with kernel ``k_l``, stride ``s_l``, padding ``p_l``
and dilation ``d_l`` (dilation enters only through the effective kernel size
``k^_l = d_l (k_l - 1) + 1``, Dumoulin & Visin's relationship 15), Araujo et al. derive

* receptive field size   ``r_0 = sum_l (k^_l - 1) prod_{i<l} s_i + 1``,
* effective stride       ``S_0 = prod_l s_l``,
* effective padding      ``P_0 = sum_l p_l prod_{i<l} s_i``,

and output unit ``j`` sees the input interval ``[u, v] = [j S_0 - P_0, j S_0 - P_0 + r_0 - 1]``.
For graphs with several paths (ResNet bottlenecks: the residual branch and the shortcut),
each path gives an interval and the receptive field is their union (Araujo et al., section
"Arbitrary computation graphs"); with equal strides that is the path with the largest extent.

A layer that reads the whole input (global average pooling) makes a map *global*: like ASPP's
image pooling branch (chapter 04), it sees every pixel, and everything computed from it does too.
One exception is followed: a *channel gate*, the product of a map with a global 1x1 map of
per-channel weights, as in squeeze-and-excitation (Hu et al., CVPR 2018; MobileNetV3,
EfficientNet). It rescales the channels of the map without moving any pixel's window, so the
product keeps the field of its spatial operand; the field counted is that of the spatial path,
and the gates passed are listed in :attr:`ReceptiveField.gates` (each also reads the whole image).

* :class:`LayerSpec`, :func:`receptive_field`, :func:`receptive_field_table`: the recurrences.
* :func:`receptive_field_of`: derives it from a PyTorch module by tracing it with ``torch.fx``
  (convolutions and pooling on every path, union at additions), e.g. torchvision's
  ``vgg16().features``, ``alexnet().features``, ``resnet50()`` or a dilated ResNet.
* :func:`empirical_receptive_field`, :func:`compare_with_brute_force`: the brute-force check:
  which input pixels have a non-zero gradient for one output unit.
* :func:`strides_in_last_unit`: torchvision's ResNet rebuilt with TF-Slim's ``resnet_v1`` layout
  (each stage's stride in the *last* unit of the stage before it), the network behind the
  483-pixel ResNet-50 receptive field in Araujo et al.'s table.

Which pixels *inside* the field are read (gridding) is :mod:`deeplab_edu.gridding`; how much
each one matters is :mod:`deeplab_edu.effective_receptive_field`.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass, field, replace
from typing import Any, Sequence, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from .choices import is_whole

__all__ = [
    "LayerSpec",
    "ReceptiveField",
    "receptive_field",
    "receptive_field_table",
    "receptive_field_of",
    "spatial_part",
    "EmpiricalField",
    "empirical_receptive_field",
    "compare_with_brute_force",
    "strides_in_last_unit",
]


@dataclass(frozen=True)
class LayerSpec:
    """One layer along one axis: kernel size, stride, padding and dilation (atrous rate).

    Raises:
        ValueError: ``kernel``, ``stride`` or ``dilation`` is not an int >= 1, or ``padding`` is not an int >= 0 (a
            bool is rejected).
    """

    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for attr, low in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            value = getattr(self, attr)
            if not is_whole(value) or value < low:
                raise ValueError(f"LayerSpec {self.name or ''}: {attr} must be an int >= {low}, got {value!r}")
            object.__setattr__(self, attr, int(value))  # NumPy's integers too, kept as Python's (an audit)

    @property
    def effective_kernel(self) -> int:
        """``d (k - 1) + 1``: the span of the dilated kernel."""
        return self.dilation * (self.kernel - 1) + 1


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field size, effective stride and effective padding of a feature map.

    ``size``, ``stride`` and ``padding`` are Araujo et al.'s (Distill 2019) r0, S0 and P0, in input
    pixels: the side of the input window one output unit sees, the input pixels between two
    neighbouring units, and the input pixels the first unit's window starts before the image (its
    left edge at ``-padding``). ``path`` holds the layer specs along the path that sets the receptive field.
    ``gates`` names the channel gates (squeeze-and-excitation) met on the way: each rescales the map's
    channels by a reading of the *whole* input, which the field, that of the spatial path, does not count.
    """

    size: int = 1
    stride: int = 1
    padding: int = 0
    path: tuple[LayerSpec, ...] = field(default=(), compare=False)
    gates: tuple[str, ...] = field(default=(), compare=False)

    def then(self, spec: LayerSpec) -> "ReceptiveField":
        """The receptive field after one more layer (one step of the recurrences)."""
        return ReceptiveField(
            size=self.size + (spec.effective_kernel - 1) * self.stride,
            stride=self.stride * spec.stride,
            padding=self.padding + spec.padding * self.stride,
            path=self.path + (spec,),
            gates=self.gates,
        )

    def region(self, index: int) -> tuple[int, int]:
        """Input interval ``[u, v]`` (inclusive; may extend past the image) seen by output ``index``."""
        u = index * self.stride - self.padding
        return u, u + self.size - 1

    def center(self, index: int) -> float:
        """Centre of the region of output ``index`` in input coordinates."""
        u, v = self.region(index)
        return (u + v) / 2

    @staticmethod
    def union(fields: Sequence["ReceptiveField"]) -> "ReceptiveField":
        """Receptive field of a sum/concatenation of branches: the union of their intervals.

        Raises:
            ValueError: ``fields`` is empty, or the fields have different strides.
        """
        if not fields:
            raise ValueError("union of no receptive fields")
        strides = {f.stride for f in fields}
        if len(strides) > 1:
            raise ValueError(f"branches with different effective strides {sorted(strides)} cannot be merged")
        padding = max(f.padding for f in fields)
        widest = max(fields, key=lambda f: f.size)
        return ReceptiveField(
            size=max(f.size - f.padding for f in fields) + padding,
            stride=fields[0].stride,
            padding=padding,
            path=widest.path,
            gates=tuple(dict.fromkeys(g for f in fields for g in f.gates)),  # each once, in order
        )


def receptive_field(specs: Sequence[LayerSpec]) -> ReceptiveField:
    """Receptive field of a single path of layers (input first), by the recurrences of Araujo et al.
    (Distill 2019): r0 grows by (k_eff - 1) S0 per layer, S0 multiplies by the layer's stride, P0 grows by
    its padding times S0 (in input pixels, :class:`ReceptiveField`).

    Raises:
        TypeError: an element of ``specs`` is not a :class:`LayerSpec`.
    """
    rf = ReceptiveField()
    for i, spec in enumerate(specs):
        if not isinstance(spec, LayerSpec):
            raise TypeError(f"specs[{i}] must be a LayerSpec, got {type(spec).__name__}")
        rf = rf.then(spec)
    return rf


def receptive_field_table(specs: Sequence[LayerSpec]) -> list[dict[str, Any]]:
    """One row per layer: its spec and the receptive field, stride and padding after it."""
    rows, rf = [], ReceptiveField()
    for i, spec in enumerate(specs):
        rf = rf.then(spec)
        rows.append({
            "layer": spec.name or f"layer {i + 1}", "kernel": spec.kernel, "stride": spec.stride,
            "padding": spec.padding, "dilation": spec.dilation, "effective kernel": spec.effective_kernel,
            "receptive field": rf.size, "effective stride": rf.stride, "effective padding": rf.padding,
        })
    return rows


# ---------------------------------------------------------------------------------------------
# Deriving the specs from a module (torch.fx graph walk)
# ---------------------------------------------------------------------------------------------
_GEOMETRY = (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_POINTWISE = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.ReLU, nn.ReLU6,
    nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.Dropout, nn.Dropout2d, nn.Identity,
)
_GLOBAL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)
_GLOBAL_FUNCS = {torch.flatten, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear, torch.mean}
_GLOBAL_METHODS = {"flatten", "view", "reshape", "mean"}
_GEOMETRY_FUNCS = {F.interpolate, F.conv2d, F.max_pool2d, F.avg_pool2d, F.pixel_shuffle, F.unfold}
_NON_TENSOR_METHODS = {"size", "dim"}
_MULTIPLY_FUNCS = {operator.mul, operator.imul, torch.mul}


def _at(value: Any, axis: int) -> Any:
    return value[axis] if isinstance(value, (tuple, list)) else value


def _spec_of(module: nn.Module, name: str, axis: int) -> LayerSpec:
    kernel = _at(module.kernel_size, axis)
    dilation = _at(getattr(module, "dilation", 1), axis)
    padding: Any = module.padding  # int, tuple or "same"/"valid" (torch types module attributes as Tensor | Module)
    if isinstance(padding, str):  # Conv2d(padding="same"/"valid"); PyTorch puts the odd pixel last
        padding = 0 if padding == "valid" else (dilation * (kernel - 1)) // 2
    padding = _at(padding, axis)
    stride = _at(module.stride, axis)
    return LayerSpec(int(kernel), int(stride), int(padding), int(dilation), name=name)


@dataclass
class _State:
    rf: ReceptiveField | None  # None: global (sees the whole input)
    node: fx.Node
    one_pixel: bool = False  # global and 1x1 in space (one value per channel): multiplied onto a map, a gate


def _pools_to_one_pixel(node: fx.Node, module: nn.Module | None = None) -> bool:
    """Whether a global layer leaves a 1x1 map: adaptive pooling to size 1, or a mean over H and W that
    keeps them (``keepdim=True``), the squeeze of squeeze-and-excitation."""
    if module is not None:
        return isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and module.output_size in (1, (1, 1))
    if node.target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        return node.kwargs.get("output_size", node.args[1] if len(node.args) > 1 else None) in (1, (1, 1))
    if node.target in (torch.mean, "mean"):
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        dims = set(dim) if isinstance(dim, (tuple, list)) else {dim}
        return bool(node.kwargs.get("keepdim", False)) and dims in ({2, 3}, {-2, -1})
    return False


def _is_multiply(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _MULTIPLY_FUNCS) or (
        node.op == "call_method" and node.target in ("mul", "mul_"))


def _name(node: fx.Node) -> str:
    """A node as a user knows it: the submodule it calls, else its graph name."""
    return str(node.target) if node.op == "call_module" else node.name


@dataclass
class _Walk:
    """What :func:`_walk` found: the last spatial map (its state and node) and the channel gates, each
    product mapped to its gate operand (the 1x1 global map)."""

    state: _State
    node: fx.Node
    gates: dict[fx.Node, fx.Node]


def _rf(state: _State) -> ReceptiveField:
    """``state.rf`` of a state known to be spatial (``rf`` not None)."""
    return cast(ReceptiveField, state.rf)


def _trace(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types for untraceable code
        raise ValueError(
            f"could not trace {type(model).__name__} with torch.fx ({type(err).__name__}: {err}); "
            "pass a list of LayerSpec to receptive_field() instead"
        ) from err


def _walk(gm: fx.GraphModule, *, axis: int, upto: fx.Node | None, output_key: str) -> _Walk:
    """Propagate receptive fields through the graph; return the last spatial map (see :class:`_Walk`).

    A node with a global input is global, except a channel gate (a product of spatial maps and 1x1
    global maps), which keeps the union of its spatial operands' fields. When the output is global,
    the map returned is the one its global head reads (:func:`_head_input`).
    """
    states: dict[fx.Node, _State | None] = {}
    gates: dict[fx.Node, fx.Node] = {}
    mixes: set[fx.Node] = set()  # global nodes that read a spatial map beside a global one (image pooling's concat)
    for node in gm.graph.nodes:
        inputs = [st for st in (states.get(a) for a in node.all_input_nodes) if st is not None]
        spatial = [s for s in inputs if s.rf is not None]
        if node.op == "placeholder":
            states[node] = _State(ReceptiveField(), node)
            continue
        if node.op == "get_attr" or (node.op == "call_method" and node.target in _NON_TENSOR_METHODS):
            states[node] = None
            continue
        if node.op == "call_function" and node.target is getattr:
            states[node] = None
            continue
        if node.op == "output":
            out = node.args[0]
            if isinstance(out, dict):
                if output_key not in out:
                    raise ValueError(f"the model returns a dict with keys {sorted(out)}; no output_key {output_key!r}")
                out = out[output_key]
            elif isinstance(out, (tuple, list)):
                out = out[0]
            state = states.get(out)
            if state is None:
                raise ValueError("the model's output is not a tensor computed from the input")
            if state.rf is None:
                state = _head_input(states, mixes, out)
            return _Walk(state, state.node, gates)
        if not inputs:
            states[node] = None
            continue
        is_global = len(spatial) < len(inputs)  # a global input makes the result global...
        one_pixel = all(s.one_pixel for s in inputs if s.rf is None)  # ...unless they are 1x1 gates (below)
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, _GEOMETRY):
                if len(inputs) != 1:
                    raise ValueError(f"{node.target}: expected one tensor input")
                spec = _spec_of(module, node.target, axis)
                state = _State(None, node, one_pixel) if is_global else _State(_rf(inputs[0]).then(spec), node)
            elif isinstance(module, _GLOBAL):
                state = _State(None, node, _pools_to_one_pixel(node, module))
            elif isinstance(module, _POINTWISE) or type(module).__name__ == "FrozenBatchNorm2d":
                if is_global and spatial:
                    mixes.add(node)
                state = _State(None if is_global else ReceptiveField.union([_rf(s) for s in spatial]), node,
                               is_global and not spatial and one_pixel)
            else:
                raise ValueError(
                    f"receptive_field_of does not know layer {node.target!r} ({type(module).__name__}); "
                    "use receptive_field() with a list of LayerSpec for it"
                )
            if node is upto:
                return _Walk(state, cast(fx.Node, node), gates)  # ``is upto``: mypy sees ``fx.Node | None``
        elif node.op == "call_function" and node.target in _GLOBAL_FUNCS or (
            node.op == "call_method" and node.target in _GLOBAL_METHODS
        ):
            state = _State(None, node, _pools_to_one_pixel(node))
        elif node.op == "call_function" and node.target in _GEOMETRY_FUNCS:
            if spatial:
                raise ValueError(
                    f"node {node.name} calls {getattr(node.target, '__name__', node.target)}, which changes the "
                    "geometry in a way receptive_field_of does not model (e.g. upsampling); point it at the "
                    "backbone instead (e.g. model.backbone)"
                )
            state = _State(None, node)  # e.g. upsampling a globally pooled map: still global, now map-sized
        elif not is_global:  # element-wise: add, mul, cat, relu, ... -> union of the branches
            state = _State(ReceptiveField.union([_rf(s) for s in spatial]), node)
        elif spatial and one_pixel and _is_multiply(node):  # a channel gate: the spatial operands' field
            gate = next(s.node for s in inputs if s.rf is None)
            merged = ReceptiveField.union([_rf(s) for s in spatial])
            state = _State(replace(merged, gates=merged.gates + (_name(gate),)), node)
            gates[node] = gate
        else:  # global operands only, or a spatial map combined with a global one that is not a gate
            if spatial:
                mixes.add(node)
            state = _State(None, node, not spatial and one_pixel)
        states[node] = state
    raise ValueError("the traced graph has no output")  # pragma: no cover


def _head_input(states: dict[fx.Node, _State | None], mixes: set[fx.Node], out: fx.Node) -> _State:
    """The spatial map that a global output is computed from, when that is a *head* (global pooling, then
    flatten and a classifier: ``resnet50()`` gives ``layer4``'s output): the global nodes before the output
    read exactly one spatial map, and only through global layers.

    Raises:
        ValueError: the output also reads a spatial map beside a global one (ASPP's image pooling concatenated
            with its atrous branches, a gate that is not 1x1), or reads several spatial maps, or none.
    """
    maps: dict[fx.Node, _State] = {}
    todo, seen, mixed = [out], set(), []
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in mixes:
            mixed.append(node)
        for arg in node.all_input_nodes:
            state = states.get(arg)
            if state is not None and state.rf is None:
                todo.append(arg)
            elif state is not None:
                maps[arg] = state
    if mixed:  # the first in the graph's order (DeepLabv3+: the ASPP's concatenation, not the decoder's after it)
        order = {n: i for i, n in enumerate(out.graph.nodes)}
        first = min(mixed, key=order.__getitem__)
        inside = list(first.meta.get("nn_module_stack", {}))  # the submodules fx traced it in, outermost first
        where = f"{_name(first)!r}" + (f" (in {inside[-1]})" if inside else "")
        raise ValueError(
            f"the output is global from node {where} on: it combines a spatial map with one that sees the "
            "whole input (like ASPP's image pooling), so no spatial map precedes the output alone; pass upto= "
            "the submodule whose map you want (e.g. upto='backbone'), or point it at the backbone"
        )
    if not maps:
        raise ValueError("the output is global but no spatial map was found before it")
    if len(maps) > 1:
        raise ValueError(f"the output is global and reads {len(maps)} spatial maps ({', '.join(map(_name, maps))}); "
                         "pass upto= the submodule whose map you want")
    return next(iter(maps.values()))


def _last_call(gm: fx.GraphModule, upto: str | None) -> fx.Node | None:
    """The last graph node that calls submodule ``upto`` or one of its children (its output)."""
    if upto is None:
        return None
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and (n.target == upto or n.target.startswith(upto + "."))]
    if not calls:
        raise ValueError(f"upto={upto!r} is not a submodule called by {type(gm).__name__}'s forward")
    return calls[-1]


def receptive_field_of(
    model: nn.Module | list[LayerSpec] | tuple[LayerSpec, ...],
    *,
    upto: str | None = None,
    output_key: str = "out",
    axis: int = 0,
) -> ReceptiveField:
    """Receptive field of a model's last spatial feature map, derived from its layers.

    The module is traced with ``torch.fx``; convolutions and pooling layers compose by the
    recurrences, point-wise layers (batch norm, activations) pass through, and branches that
    meet (the residual addition of a bottleneck) take the union of their intervals. Global
    layers (adaptive pooling, flatten, linear) end the spatial part: when the output is global
    and its global head reads one spatial map, that map's field is returned (for ``resnet50()``,
    ``layer4``'s output). A channel gate (squeeze-and-excitation in MobileNetV3 or EfficientNet)
    keeps the field of the map it rescales: the field is that of the spatial path, and the gates,
    which read the whole input, are named in the result's ``gates`` (see the module's docstring).
    A map combined with a global one otherwise (ASPP's image pooling, concatenated) is global.

    Args:
        model: a module, or a list of :class:`LayerSpec` (then this is :func:`receptive_field`).
        upto: stop after the submodule of this name (e.g. ``"layer3"`` or ``"features.16"``).
        output_key: which entry to follow when the model returns a dict.
        axis: 0 for height, 1 for width (kernels may be non-square).

    Raises:
        TypeError: ``model`` is neither an ``nn.Module`` nor a list or tuple, or (for a list or tuple) an element
            is not a :class:`LayerSpec`.
        ValueError: ``axis`` is not 0 or 1; the model cannot be traced with ``torch.fx``; ``upto`` is not a submodule
            its forward calls; the model returns a dict without ``output_key`` or an output not computed from the
            input; the graph holds a layer or a geometry-changing function (e.g. upsampling of a spatial map) it
            does not model, or branches of different strides meet; the output is global, not through a head that
            reads one spatial map (e.g. a whole DeepLabv3, whose ASPP concatenates image pooling: the message names
            the node; pass ``upto``); or the requested feature map is global (it sees the whole input).
    """
    if axis not in (0, 1):  # an audit: 2 was an IndexError deep in the walk
        raise ValueError(f"axis must be 0 (height) or 1 (width), got {axis!r}")
    if isinstance(model, (list, tuple)):
        return receptive_field(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a list of LayerSpec, got {type(model).__name__}")
    gm = _trace(model)
    state = _walk(gm, axis=axis, upto=_last_call(gm, upto), output_key=output_key).state
    if state.rf is None:
        raise ValueError("the requested feature map is global (it sees the whole input)")
    return state.rf


def spatial_part(model: nn.Module, *, upto: str | None = None, output_key: str = "out") -> fx.GraphModule:
    """The model cut at its last spatial feature map (before global pooling), as an fx module.

    Shares parameters with ``model``. ``resnet50()`` becomes conv1 ... layer4; channel gates
    (squeeze-and-excitation) stay in, as in :func:`receptive_field_of`.

    Raises:
        ValueError: ``model`` cannot be traced by torch.fx, ``upto`` is not a submodule its forward
            calls, the output is a dict without ``output_key``, or no single spatial feature map comes
            before a global output (as for :func:`receptive_field_of`).
    """
    return _cut(model, upto=upto, output_key=output_key)


def _cut(model: nn.Module, *, upto: str | None, output_key: str, open_gates: bool = False) -> fx.GraphModule:
    """:func:`spatial_part`; with ``open_gates``, each channel gate's global operand is replaced by ones (the
    gate held open), so that a gradient reaches the input through the spatial path only (the field
    :func:`receptive_field_of` counts) and no product of gates can overflow the faithful copy."""
    gm = _trace(model)
    walk = _walk(gm, axis=0, upto=_last_call(gm, upto), output_key=output_key)
    last = walk.node
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in gm.graph.nodes:
        if node.op == "output":
            break
        opened: dict[fx.Node, fx.Node] = {}  # this node's gate operand -> ones of its shape
        if open_gates and node in walk.gates:
            gate = walk.gates[node]
            opened[gate] = graph.call_function(torch.ones_like, (env[gate],))
        env[node] = graph.node_copy(node, lambda n: opened.get(n, env[n]))
        if node is last:
            break
    graph.output(env[last])
    for node in reversed(list(graph.nodes)):  # drop what the cut output does not use
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)
    return fx.GraphModule(gm, graph)


def strides_in_last_unit(resnet: nn.Module) -> nn.Module:
    """Move a torchvision ResNet's strides to TF-Slim's ``resnet_v1`` positions, in place.

    torchvision strides in the *first* unit of ``layer2``-``layer4`` (on its 3x3 conv and its 1x1
    projection shortcut). TF-Slim's ``resnet_v1_50`` (``nets/resnet_v1.py``, whose receptive field
    of 483 px Araujo et al. tabulate) strides in the *last* unit of blocks 1-3 instead, on its 3x3
    conv, with a 1x1 subsampling shortcut (``subsample``: max pooling with a 1x1 window); block 4
    does not stride. The output stride stays 32 and no weight changes shape, but one 3x3 conv moves
    from stride 4 to stride 32, so the receptive field grows from 427 to 483 px for ResNet-50.
    (Paddings stay torchvision's; they shift the field, not its size.)

    Args:
        resnet: a torchvision ``ResNet`` with bottleneck units (ResNet-50/101/152), e.g. built on
            the ``meta`` device.

    Returns:
        The same module, modified.

    Raises:
        ValueError: ``resnet`` has no ``layer1``-``layer4`` of bottleneck units with a strided first
            unit in ``layer2``-``layer4``.
    """
    layers: list[Any] = [getattr(resnet, f"layer{i}", None) for i in range(1, 5)]
    if any(layer is None for layer in layers) or not all(hasattr(layer[0], "conv2") and hasattr(layer[0], "conv3")
                                                          for layer in layers):
        raise ValueError("strides_in_last_unit needs a torchvision ResNet with bottleneck units (layer1..layer4)")
    for before, layer in zip(layers[:3], layers[1:]):
        first = layer[0]
        if first.conv2.stride != (2, 2) or first.downsample is None:
            raise ValueError("strides_in_last_unit: the first unit of layer2..layer4 must have stride 2 "
                             "(a ResNet not already modified)")
        first.conv2.stride = (1, 1)
        first.downsample[0].stride = (1, 1)
        first.stride = 1
        last = before[-1]
        last.conv2.stride = (2, 2)
        last.downsample = nn.MaxPool2d(kernel_size=1, stride=2)
        last.stride = 2
    return resnet


# ---------------------------------------------------------------------------------------------
# Brute force: the pixels whose gradient is non-zero
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmpiricalField:
    """Where one output unit's gradient reaches the input.

    Attributes:
        rows, cols: the inclusive bounding box of the reached input pixels, ``(first, last)``.
        output_index: the output unit ``(i, j)`` whose gradient was traced.
        output_shape: the output map's ``(height, width)``.
        support: ``(H, W)`` bool tensor over the input: ``True`` where the gradient is non-zero.
    """

    rows: tuple[int, int]
    cols: tuple[int, int]
    output_index: tuple[int, int]
    output_shape: tuple[int, int]
    support: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        """Height and width (pixels) of the bounding box."""
        return self.rows[1] - self.rows[0] + 1, self.cols[1] - self.cols[0] + 1


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def _make_faithful(net: nn.Module) -> None:
    """Make 'non-zero gradient' mean 'is wired to': one channel, positive averaging weights,
    average instead of max pooling (max pooling sends gradient only to the arg-max), and no
    normalisation or activation (ReLU sends none through inactive units)."""
    for name, module in list(net.named_modules()):
        if not name:
            continue
        if isinstance(module, nn.Conv2d):
            # torch types _ConvNd's sizes as tuple[int, ...]; a Conv2d's are pairs (padding: or a string)
            conv = nn.Conv2d(1, 1, module.kernel_size, module.stride,  # type: ignore[arg-type]
                             module.padding, module.dilation,  # type: ignore[arg-type]
                             bias=False, padding_mode=module.padding_mode).double()
            nn.init.constant_(conv.weight, 1.0 / conv.weight.numel())
            _set_module(net, name, conv)
        elif isinstance(module, nn.MaxPool2d):
            if module.dilation not in (1, (1, 1)):
                raise ValueError(f"{name}: dilated max pooling is not supported by the brute-force check")
            _set_module(net, name, nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode))
        elif isinstance(module, _POINTWISE) or type(module).__name__ == "FrozenBatchNorm2d":
            _set_module(net, name, nn.Identity())


def _input_size(input_size: Any) -> tuple[int, int]:
    """``input_size`` (a side, or (H, W); NumPy's integers too) as (H, W), else a ValueError naming it (an
    audit: ``np.int64(15)`` was "not iterable", 0 a convolution's RuntimeError)."""
    sides: Any = (input_size, input_size) if isinstance(input_size, numbers.Integral) else input_size
    try:
        h, w = sides
    except (TypeError, ValueError):
        h = w = None
    if not all(is_whole(v) and int(v) >= 1 for v in (h, w)):
        raise ValueError(f"input_size must be a side or (height, width) in whole pixels, at least 1, got {input_size!r}")
    return int(h), int(w)


def empirical_receptive_field(
    model: nn.Module,
    input_size: int | tuple[int, int],
    output_index: tuple[int, int] | None = None,
    *,
    faithful: bool = True,
    output_key: str = "out",
    upto: str | None = None,
) -> EmpiricalField:
    """Brute force: back-propagate from one output unit and see which input pixels it reaches.

    Args:
        model: a 2-D convolutional model (cut at its last spatial map, see :func:`spatial_part`).
        input_size: ``H`` or ``(H, W)``; odd sizes are fine.
        output_index: the output unit ``(row, col)``; the centre unit by default.
        faithful: work on a one-channel copy whose gradient is non-zero exactly where the unit
            depends on the input (see :func:`_make_faithful`); cheap even for ResNet-50 at
            500 x 500. Its channel gates (squeeze-and-excitation) are held open (at 1), so the
            gradient follows the spatial path, the field :func:`receptive_field_of` counts. ``False`` uses
            the model as it is (random input), where max pooling and ReLU leave some connected
            pixels with zero gradient, and a gate sends gradient to every pixel.

    Raises:
        ValueError: a side of ``input_size`` is not a whole number of at least 1; the model cannot be traced with ``torch.fx``; ``upto`` is
            not a submodule its forward calls; the model returns a dict without ``output_key`` or an output not
            computed from the input; the graph holds a layer or a geometry-changing function (e.g. upsampling of a
            spatial map) it does not model, or branches of different strides meet (see :func:`spatial_part`); with
            ``faithful``, the model has a dilated max pooling; the spatial part's output is not 4-D;
            ``output_index`` lies outside the output map; or no input pixel gets a non-zero gradient.
    """
    h, w = _input_size(input_size)
    # spatial_part builds fresh containers around the model's leaf layers, so swapping leaves
    # below (faithful=True) leaves ``model`` untouched without copying its weights
    net = _cut(model, upto=upto, output_key=output_key, open_gates=faithful).eval()
    if faithful:
        _make_faithful(net)
        x = torch.ones(1, 1, h, w, dtype=torch.float64, requires_grad=True)
    else:
        first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None else 3
        x = torch.randn(1, channels, h, w, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = net(x)
    if out.dim() != 4:
        raise ValueError(f"the spatial part returns shape {tuple(out.shape)}, expected (N, C, H, W)")
    oh, ow = out.shape[-2:]
    i, j = ((oh - 1) // 2, (ow - 1) // 2) if output_index is None else output_index
    if not (0 <= i < oh and 0 <= j < ow):
        raise ValueError(f"output_index {(i, j)} is outside the output map of size {(oh, ow)}")
    out[0, :, i, j].sum().backward()
    if x.grad is None:  # the output reached the input through no differentiable operation
        raise ValueError("no input pixel has a non-zero gradient (try faithful=True)")
    support = x.grad[0].abs().sum(0) > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        raise ValueError("no input pixel has a non-zero gradient (try faithful=True)")
    return EmpiricalField((int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1])), (i, j), (oh, ow), support)


def compare_with_brute_force(model: nn.Module, input_size: int | None = None, *, name: str = "") -> dict[str, Any]:
    """Theory (:func:`receptive_field_of`) against brute force (:func:`empirical_receptive_field`).

    Uses the centre output unit of a square input. Without ``input_size`` it starts at
    ``r + 2 S`` (made odd) and grows by ``S`` until the unit's whole theoretical region lies inside
    the image, so the check compares full extents, not clipped ones.

    Returns:
        One table row, with ``model`` (``name`` or the class name), ``input`` (``"HxW"``), ``output map``
        (the output's shape), ``receptive field (theory)`` and ``effective stride`` (pixels),
        ``region of centre unit (theory)`` and ``brute force`` (the centre unit's first..last input
        row), and ``agree`` (``True`` when both regions match in rows and columns).

    Raises:
        TypeError, ValueError: as :func:`receptive_field_of` and :func:`empirical_receptive_field`
            raise them for a model they cannot trace or an ``input_size`` below 1.
    """
    rows_rf, cols_rf = receptive_field_of(model, axis=0), receptive_field_of(model, axis=1)
    size = input_size or (rows_rf.size + 2 * rows_rf.stride) | 1
    for _ in range(8):
        emp = empirical_receptive_field(model, size)
        (i, j) = emp.output_index
        rows, cols = rows_rf.region(i), cols_rf.region(j)
        inside = rows[0] >= 0 and cols[0] >= 0 and rows[1] < size and cols[1] < size
        if inside or input_size is not None:
            break
        size += rows_rf.stride
    return {
        "model": name or type(model).__name__, "input": f"{size}x{size}", "output map": emp.output_shape,
        "receptive field (theory)": rows_rf.size, "effective stride": rows_rf.stride,
        "region of centre unit (theory)": f"rows {rows[0]}..{rows[1]}", "brute force": f"rows {emp.rows[0]}..{emp.rows[1]} ({emp.size[0]}px)",
        "agree": emp.rows == rows and emp.cols == cols,
    }
