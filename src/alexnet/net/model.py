"""The network of §3 (Figure 2): five conv layers, three fully-connected, two columns.

The two GPUs of §3.2 become grouped convolutions on one device: ``groups=2``
in conv2, conv4 and conv5 means each column's kernels see only that column's
maps, while conv3 and the fully-connected layers see both.  Local response
normalisation is applied per column too, since each GPU normalised its own
48 maps (docs/fidelity.md).

A network is described by a :class:`ModelSpec`; :func:`build_model` turns it
into an :class:`AlexNet` (an ``nn.Sequential`` whose children are named after
the paper's layers: ``conv1, relu1, lrn1, pool1, ..., fc8``).

``ModelSpec.arch`` chooses the architecture: ``alexnet2012`` (the default, the
paper's) or one of the published networks whose weights ``alexnet import`` reads
(:mod:`alexnet.published`): ``owt2014`` (torchvision's one-column network, no
LRN, dropout before fc6 and fc7) and ``caffe`` (Caffe's bvlc_alexnet: LRN over
all maps with k = 1 and alpha / n, pooling that rounds up).  Their layers keep
the paper's names, so every probe, export and fine-tune works on them unchanged.
The reading's network switches (LRN convention and order, cnorm2, conv1's
implicit padding, conv3-conv5's initial std) belong to the 2012 network only.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from alexnet.errors import UserError, choice_error
from alexnet.net.init import HE_INITS, he_init
from alexnet.net.lrn import LocalResponseNorm, SameMapNorm
from alexnet.net.variants import ARCH_VARIANTS, ARCHS, PAPER_ARCH, VARIANTS, parse_variants  # noqa: F401
from alexnet.paper import ARCH, CODE2012, DROPOUT, INIT, LRN_PARAMS, PAPER_READING, POOL, SIXTH, Reading, reading
from alexnet.published import NETWORKS, Network

#: Weight initialisations: §5's N(0, 0.01), that std rescaled by each layer's fan-in, or He's fan-in
#: scaling, plain or rescaled for 0..255 inputs (alexnet.net.init).
INITS: tuple[str, ...] = ("paper", "fan-in", *HE_INITS)
#: Dropout forms: §4.2's (zero in training, outputs times 1 - p at test time; the 2012 code's ``hs`` layer)
#: or PyTorch's inverted dropout (survivors times 1 / (1 - p) in training, nothing at test time).
DROPOUTS: tuple[str, ...] = ("paper", "inverted")

#: Inputs at least this large use the paper's conv1 (11x11, stride 4); smaller
#: ones use a scaled stem (see :func:`stem`), documented in docs/fidelity.md.
PAPER_STEM_MIN_INPUT = 96


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines the network's architecture and initialisation."""

    num_classes: int = ARCH.num_classes
    reading: str = "paper"
    variants: tuple[str, ...] = ()
    input_size: int = ARCH.input_size
    width: float = 1.0  # multiplies every conv layer's kernel count
    fc_units: int = ARCH.fc_units
    init: str = "paper"  # "paper": std 0.01 (§5); "fan-in": std scaled to keep the paper network's per-layer gain
    arch: str = PAPER_ARCH  # the paper's network, or a published one (owt2014, caffe)
    dropout: str = "inverted"  # "paper": §4.2's form; "inverted": PyTorch's (the form of specs saved without it)

    def __post_init__(self) -> None:
        reading(self.reading)  # a UserError for an unknown name
        if self.arch not in ARCHS:
            raise choice_error("arch", self.arch, ARCHS)
        for name in self.variants:
            if name not in VARIANTS:
                raise choice_error("variant", name, VARIANTS)
            if self.arch != PAPER_ARCH and name not in ARCH_VARIANTS:
                raise UserError(f"{name} changes the 2012 network and does not apply to arch {self.arch}; "
                                f"variants of {self.arch}: {', '.join(ARCH_VARIANTS)}", key="variant")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise UserError(f"num_classes: must be an integer of at least 2, got {self.num_classes!r}")
        if not self.width > 0:
            raise UserError(f"width: must be positive, got {self.width!r}")
        if not isinstance(self.fc_units, int) or self.fc_units < 1:
            raise UserError(f"fc_units: must be a positive integer, got {self.fc_units!r}")
        if self.init not in INITS:
            raise choice_error("init", self.init, INITS)
        if self.dropout not in DROPOUTS:
            raise choice_error("dropout", self.dropout, DROPOUTS)
        if "no-conv3" in self.variants and "no-conv4" in self.variants:
            raise UserError("variant: choose at most one of no-conv3, no-conv4")
        smallest = minimum_input_size(self)
        if self.input_size < smallest:
            raise UserError(
                f"input_size: {self.input_size} is too small for this network; the smallest it can take is {smallest}"
            )

    @property
    def switches(self) -> Reading:
        """The reading's switches (:class:`alexnet.paper.Reading`): what code asks instead of the name."""
        return reading(self.reading)

    def has(self, variant: str) -> bool:
        return variant in self.variants

    @property
    def network(self) -> Network | None:
        """The published network this spec builds (None: the paper's)."""
        return NETWORKS.get(self.arch)

    @property
    def net_switches(self) -> Reading:
        """The reading's switches as the network's shape uses them (the published networks ignore them)."""
        return self.switches if self.network is None else PAPER_READING

    @property
    def columns(self) -> int:
        if self.network is not None:
            return self.network.columns
        return 1 if self.has("one-column") else ARCH.columns

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"model: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        d = dict(d)
        d["variants"] = tuple(d.get("variants", ()))
        return cls(**d)  # no "arch" (checkpoints written before it existed): the paper's network


@dataclass(frozen=True)
class Stem:
    kernel: int
    stride: int
    padding: int


def stem(input_size: int) -> Stem:
    """conv1's geometry for an input size.

    The paper's 11x11 stride-4 kernels (§3.5) for inputs of ``PAPER_STEM_MIN_INPUT``
    or more, with padding 2 (224 -> 55, torchvision's choice) unless the input
    tiles exactly (227 -> 55 without padding).  Smaller images (CIFAR-10's 32,
    Fashion-MNIST's 28, 64x64) keep the layer pattern but use 5x5 kernels with
    stride 1 (up to 48 pixels) or 2, so that pooling still has maps to pool.
    """
    conv1 = ARCH.conv[0]
    if input_size >= PAPER_STEM_MIN_INPUT:
        exact = (input_size - conv1.kernel) % conv1.stride == 0
        return Stem(conv1.kernel, conv1.stride, 0 if exact else conv1.padding)
    small_kernel = 5
    return Stem(small_kernel, 1 if input_size <= 48 else 2, small_kernel // 2)


def _scaled(channels: int, width: float, multiple: int) -> int:
    """Round ``channels * width`` to a positive multiple of ``multiple`` (columns must split evenly)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


@dataclass(frozen=True)
class LayerPlan:
    name: str
    out_channels: int
    kernel: int
    stride: int
    padding: int
    groups: int
    bias_init: float
    weight_std: float


def conv_plan(spec: ModelSpec, input_size: int | None = None) -> list[LayerPlan]:
    """The conv layers a spec implies (for its input size, or ``input_size``), in order."""
    input_size = spec.input_size if input_size is None else input_size
    columns = spec.columns
    plans: list[LayerPlan] = []
    net = spec.network
    if net is not None:  # a published network: its own geometry; §5's initialisation by layer name
        bias = {layer.name: layer.bias_init for layer in ARCH.conv}
        for c in net.conv:
            channels = _scaled(c.out_channels, spec.width, 2 * ARCH.columns)
            plans.append(LayerPlan(c.name, channels, c.kernel, c.stride, c.padding, c.groups, bias[c.name],
                                   INIT.weight_std))
    for layer in ARCH.conv if net is None else ():
        if spec.has(f"no-{layer.name}"):
            continue
        channels = layer.out_channels
        if columns == 1 and layer.name != "conv5":
            channels //= ARCH.columns  # half the kernels (§3.2), conv5 kept full (footnote 2)
        channels = _scaled(channels, spec.width, 2 * ARCH.columns)
        kernel, stride, padding = layer.kernel, layer.stride, layer.padding
        if layer.name == "conv1":
            s = stem(input_size)
            kernel, stride, padding = s.kernel, s.stride, s.padding
        groups = min(layer.groups, columns)
        std = spec.switches.conv3_5_weight_std if layer.name in ("conv3", "conv4", "conv5") else INIT.weight_std
        plans.append(LayerPlan(layer.name, channels, kernel, stride, padding, groups, layer.bias_init, std))
    if spec.has("conv6"):
        channels = _scaled(SIXTH.out_channels, spec.width, 2 * ARCH.columns)
        groups = min(SIXTH.groups, columns)
        std = plans[-1].weight_std
        plans.append(LayerPlan("conv6", channels, SIXTH.kernel, 1, SIXTH.padding, groups, SIXTH.bias_init, std))
    return plans


def _pool_geometry(spec: ModelSpec) -> tuple[int, int, bool]:
    """Max-pooling's (size, stride, rounds up)."""
    net = spec.network
    if net is not None:
        return net.pool_size, net.pool_stride, net.pool_ceil
    if spec.has("pool2"):
        return POOL.nonoverlap_size, POOL.nonoverlap_stride, False
    return POOL.size, POOL.stride, False


def _pool_after(spec: ModelSpec) -> tuple[str, ...]:
    return ARCH.pool_after if spec.network is None else spec.network.pool_after


def pooled_size(size: int, kernel: int, stride: int, ceil: bool) -> int:
    """Output side of max-pooling without padding (``ceil``: Caffe's rounding up, as PyTorch's ``ceil_mode``)."""
    if not ceil:
        return (size - kernel) // stride + 1
    out = -(-(size - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= size else out  # the last window must start inside the map


def spatial_sizes(spec: ModelSpec, input_size: int | None = None) -> list[tuple[str, int]]:
    """Spatial size after each conv/pool layer, computed arithmetically (no tensors)."""
    size = spec.input_size if input_size is None else input_size
    pool_k, pool_s, pool_ceil = _pool_geometry(spec)
    out: list[tuple[str, int]] = []
    for plan in conv_plan(spec, size):
        if plan.name == "conv1" and spec.net_switches.conv1_implicit_padding and size >= PAPER_STEM_MIN_INPUT:
            size = math.ceil((size - plan.kernel) / plan.stride) + 1  # implicit bottom/right padding
        else:
            size = (size + 2 * plan.padding - plan.kernel) // plan.stride + 1
        out.append((plan.name, size))
        if plan.name in _pool_after(spec):
            size = pooled_size(size, pool_k, pool_s, pool_ceil)
            out.append((f"pool{plan.name[-1]}", size))
    return out


def minimum_input_size(spec: ModelSpec) -> int:
    """Smallest input for which every map stays at least 1x1."""
    for size in range(1, 4 * ARCH.input_size):
        if all(s >= 1 for _, s in spatial_sizes(spec, size)):
            return size
    return 4 * ARCH.input_size  # pragma: no cover


class AlexNet(nn.Sequential):
    """The §3 network as a named ``nn.Sequential``; ``spec`` records how it was built."""

    spec: ModelSpec

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's activity (fc7 after its ReLU; 4096-d in the paper), used in §6.1.

        The layers up to fc7's ReLU run exactly as in ``forward`` (in eval mode §4.2's dropout after
        fc6 halves fc7's input, as it does for the prediction); fc7's own dropout is not applied.
        """
        for name, module in self.named_children():
            x = module(x)
            if name == "relu7":
                return x
        raise RuntimeError("network has no relu7")  # pragma: no cover

    def conv1_kernels(self) -> Tensor:
        """conv1's weights (96, 3, 11, 11 in the paper); the first half is column 1 (Figure 3)."""
        return self.conv1.weight.detach()

    @property
    def columns(self) -> int:
        return self.spec.columns


class PaperDropout(nn.Dropout):
    """§4.2's dropout: in training each output is zeroed with probability ``p`` and the others pass
    unchanged; at test time every output is multiplied by ``1 - p`` (0.5).  The 2012 code's ``hs``
    layer did the same (``layer.cu``: a 0/1 mask in training, ``scale(_keep)`` otherwise)."""

    def forward(self, x: Tensor) -> Tensor:
        keep = 1.0 - self.p
        if self.training:
            return x * torch.empty_like(x).bernoulli_(keep)
        return x * keep


class _PadBottomRight(nn.Module):
    """The 2012 code's implicit padding: conv1 output 1 + ceil((224 - 11) / 4) = 55."""

    def __init__(self, amount: int) -> None:
        super().__init__()
        self.amount = amount

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.pad(x, (0, self.amount, 0, self.amount))


def build_model(spec: ModelSpec | None = None, **kwargs: Any) -> AlexNet:
    """Build and initialise (§5) the network a spec describes; kwargs build a spec."""
    if spec is None:
        spec = ModelSpec(**kwargs)
    elif kwargs:
        spec = replace(spec, **kwargs)
    switches = spec.net_switches
    net = spec.network
    act: type[nn.Module] = nn.Tanh if spec.has("tanh") else nn.ReLU
    pool_k, pool_s, pool_ceil = _pool_geometry(spec)
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    in_channels = 3
    size_after = dict(spatial_sizes(spec))
    for plan in conv_plan(spec):
        idx = plan.name[-1]
        padding = plan.padding
        if plan.name == "conv1" and switches.conv1_implicit_padding and spec.input_size >= PAPER_STEM_MIN_INPUT:
            total = (size_after["conv1"] - 1) * plan.stride + plan.kernel - spec.input_size
            layers["pad1"] = _PadBottomRight(total)
            padding = 0
        conv = nn.Conv2d(in_channels, plan.out_channels, plan.kernel, plan.stride, padding, groups=plan.groups)
        nn.init.normal_(conv.weight, 0.0, plan.weight_std)
        nn.init.constant_(conv.bias, plan.bias_init)
        layers[plan.name] = conv
        lrn = plan.name in (ARCH.lrn_after if net is None else net.lrn_after) and not spec.has("no-lrn")
        if net is None:
            norm = LocalResponseNorm(
                LRN_PARAMS.n, LRN_PARAMS.alpha, LRN_PARAMS.beta, LRN_PARAMS.k,
                alpha_divided_by_n=switches.lrn_alpha_divided_by_n, groups=spec.columns,
            )
        else:  # Caffe normalises across all maps of the layer, not per column
            norm = LocalResponseNorm(net.lrn_n, net.lrn_alpha, net.lrn_beta, net.lrn_k,
                                     alpha_divided_by_n=net.lrn_alpha_divided_by_n, groups=1)
        # conv6's ReLU must not take fc6's name "relu6"
        relu_name = "relu_conv6" if plan.name == "conv6" else f"relu{idx}"
        if lrn and switches.conv1_lrn_before_relu and plan.name == "conv1":
            layers[f"lrn{idx}"] = norm  # the 2012 code normalised conv1 before its ReLU
            layers[relu_name] = act()
        else:
            layers[relu_name] = act()
            if lrn:
                layers[f"lrn{idx}"] = norm
        if lrn and switches.cnorm2 and plan.name == "conv2":
            layers["cnorm2"] = SameMapNorm(
                CODE2012.cnorm2_size, CODE2012.cnorm2_scale, CODE2012.cnorm2_pow, CODE2012.cnorm2_k
            )
        if plan.name in _pool_after(spec):
            layers[f"pool{idx}"] = nn.MaxPool2d(pool_k, pool_s, ceil_mode=pool_ceil)
        in_channels = plan.out_channels
    final = spatial_sizes(spec)[-1][1]
    layers["flatten"] = nn.Flatten()
    fc_in = in_channels * final * final
    dropout = not spec.has("no-dropout")
    before = net is not None and net.dropout_before_fc  # torchvision: dropout on fc6's and fc7's inputs
    for name, fan_in in (("fc6", fc_in), ("fc7", spec.fc_units)):
        if dropout and before:
            layers[f"drop{int(name[-1]) - 1}"] = nn.Dropout(net.dropout)  # type: ignore[union-attr]
        fc = nn.Linear(fan_in, spec.fc_units)
        nn.init.normal_(fc.weight, 0.0, INIT.weight_std)
        nn.init.constant_(fc.bias, ARCH.fc_bias_init)
        layers[name] = fc
        layers[f"relu{name[-1]}"] = act()
        if dropout and not before and name in DROPOUT.layers:
            p = DROPOUT.p if net is None else net.dropout
            layers[f"drop{name[-1]}"] = (PaperDropout if spec.dropout == "paper" else nn.Dropout)(p)
    fc8 = nn.Linear(spec.fc_units, spec.num_classes)
    nn.init.normal_(fc8.weight, 0.0, INIT.weight_std)
    nn.init.constant_(fc8.bias, ARCH.out_bias_init)
    layers["fc8"] = fc8
    model = AlexNet(layers)
    model.spec = spec
    if spec.init == "fan-in":
        _rescale_to_paper_gain(model, spec)
    elif spec.init in HE_INITS:
        he_init(model, spec.init)
    return model


def paper_fan_ins(spec: ModelSpec) -> dict[str, int]:
    """Inputs per unit of each weighted layer in the full-size network with the same variants."""
    full = ModelSpec(num_classes=spec.num_classes, reading=spec.reading, variants=spec.variants, arch=spec.arch)
    fan: dict[str, int] = {}
    channels = 3
    for plan in conv_plan(full):
        fan[plan.name] = channels // plan.groups * plan.kernel * plan.kernel
        channels = plan.out_channels
    final = spatial_sizes(full)[-1][1]
    fan["fc6"] = channels * final * final
    fan["fc7"] = fan["fc8"] = full.fc_units
    return fan


def _fan_in(module: nn.Module) -> int:
    return module.weight[0].numel()


def _rescale_to_paper_gain(model: AlexNet, spec: ModelSpec) -> None:
    """Scale each layer's weights by sqrt(paper fan-in / this fan-in).

    A weight of std s on fan-in m passes signal with gain s * sqrt(m); the
    paper's 0.01 was chosen for its layer sizes (conv2: 1200 inputs per kernel,
    fc6: 9216).  A narrow network with the same 0.01 has a much smaller gain
    per layer, so its fc7 activity is dominated by the biases of 1 and it never
    starts learning (docs/fidelity.md).  Keeping the paper's per-layer gain is
    the width-scaling rule that leaves the full-size network unchanged.
    """
    reference = paper_fan_ins(spec)
    with torch.no_grad():
        for name, module in model.named_children():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and name in reference:
                module.weight.mul_(math.sqrt(reference[name] / _fan_in(module)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
