"""The network of §3 / Figure 2, its initialisation (§5) and its variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.net.lrn import LocalResponseNorm, SameMapNorm
from alexnet.net.model import ModelSpec, build_model, count_parameters, minimum_input_size, spatial_sizes
from alexnet.paper import ARCH, CODE2012, DROPOUT, INIT
from helpers import layer_outputs


@pytest.fixture(scope="module")
def paper_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec())


def test_parameter_count_is_exact(paper_model: nn.Module) -> None:
    assert count_parameters(paper_model) == ARCH.parameter_count == 60_965_224


@pytest.mark.parametrize("input_size", [224, 227])
def test_per_layer_shapes_match_figure_2(input_size: int) -> None:
    model = build_model(ModelSpec(input_size=input_size)).eval()
    shapes = layer_outputs(model, torch.zeros(1, 3, input_size, input_size))
    assert shapes["conv1"] == (96, ARCH.conv1_output, ARCH.conv1_output)
    assert shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27)
    assert shapes["pool2"] == (256, 13, 13)
    assert shapes["conv3"] == (384, 13, 13)
    assert shapes["conv4"] == (384, 13, 13)
    assert shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)
    assert shapes["fc6"] == shapes["fc7"] == (4096,)
    assert shapes["fc8"] == (1000,)
    # Figure 2's neuron counts from conv2 on (the first one is the paper's known slip)
    counts = [shapes[n] for n in ("conv2", "conv3", "conv4", "conv5")]
    assert [c[0] * c[1] * c[2] for c in counts] == list(ARCH.figure2_neurons[1:5])


def test_code2012_input_224_gives_55_by_bottom_right_padding() -> None:
    model = build_model(ModelSpec(reading="code2012")).eval()
    shapes = layer_outputs(model, torch.zeros(1, 3, 224, 224))
    assert shapes["pad1"] == (3, 224 + CODE2012.conv1_pad_bottom_right, 224 + CODE2012.conv1_pad_bottom_right)
    assert shapes["conv1"] == (96, 55, 55)
    assert count_parameters(model) == ARCH.parameter_count


def test_layer_order_paper_vs_code2012() -> None:
    paper = [n for n, _ in build_model(ModelSpec()).named_children()]
    code = [n for n, _ in build_model(ModelSpec(reading="code2012")).named_children()]
    assert paper[:4] == ["conv1", "relu1", "lrn1", "pool1"]  # ReLU then LRN (§3.3)
    assert code[:5] == ["pad1", "conv1", "lrn1", "relu1", "pool1"]  # LRN before ReLU in the 2012 code
    assert "cnorm2" in code and "cnorm2" not in paper
    lrn = build_model(ModelSpec(reading="code2012")).lrn1
    assert isinstance(lrn, LocalResponseNorm) and lrn.alpha_divided_by_n
    assert isinstance(build_model(ModelSpec(reading="code2012")).cnorm2, SameMapNorm)


def test_initialisation_statistics(paper_model: nn.Module) -> None:
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        layer = getattr(paper_model, name)
        w = layer.weight.detach()
        assert abs(w.mean().item()) < 3 * INIT.weight_std / w.numel() ** 0.5 + 1e-4
        assert w.std().item() == pytest.approx(INIT.weight_std, rel=0.1 if w.numel() < 50_000 else 0.02)
        expected_bias = 1.0 if name in INIT.bias_one_layers else 0.0
        assert torch.all(layer.bias == expected_bias), name


def test_code2012_conv3_to_5_start_wider() -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(reading="code2012"))
    for name in ("conv3", "conv4", "conv5"):
        assert getattr(model, name).weight.std().item() == pytest.approx(CODE2012.conv3_5_weight_std, rel=0.02)
    assert model.conv2.weight.std().item() == pytest.approx(INIT.weight_std, rel=0.02)


def test_columns_connectivity_by_perturbation(paper_model: nn.Module) -> None:
    """Perturbing column 1's conv1 maps changes conv2 only in column 1; conv3 sees both columns."""
    model = paper_model.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        h = x
        for name in ("conv1", "relu1", "lrn1", "pool1"):
            h = getattr(model, name)(h)

        def run_from_pool1(h1: torch.Tensor) -> dict[str, torch.Tensor]:
            out = {}
            for name in ("conv2", "relu2", "lrn2", "pool2", "conv3", "relu3", "conv4"):
                h1 = getattr(model, name)(h1)
                out[name] = h1
            return out

        base = run_from_pool1(h)
        bumped = h.clone()
        bumped[:, :48] += torch.rand_like(bumped[:, :48])  # column 1's maps only
        moved = run_from_pool1(bumped)
    diff2 = (moved["conv2"] - base["conv2"]).abs().flatten(2).amax(-1)[0]
    assert diff2[:128].min() > 0, "every column-1 conv2 map should see column 1's conv1 maps"
    assert diff2[128:].max() == 0, "column-2 conv2 maps must not see column 1"
    diff3 = (moved["conv3"] - base["conv3"]).abs().flatten(2).amax(-1)[0]
    assert diff3[:192].min() > 0 and diff3[192:].min() > 0, "conv3 reads both columns"


def test_conv4_conv5_are_column_local_by_gradient(paper_model: nn.Module) -> None:
    model = paper_model.eval()
    h3 = torch.randn(1, 384, 13, 13, requires_grad=True)
    out = model.conv5(model.relu4(model.conv4(h3)))
    out[:, :128].sum().backward()  # column 1's conv5 maps
    grad = h3.grad.abs().flatten(2).amax(-1)[0]
    assert grad[:192].min() > 0 and grad[192:].max() == 0


def test_dropout_only_in_training_mode() -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(input_size=32, width=0.25, fc_units=64, num_classes=10))
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    assert not torch.equal(a, model(x))
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(m.p == DROPOUT.p for m in drops)
    # inverted dropout (the default of ModelSpec and of the small-data presets; fidelity.md): survivors are
    # doubled in training, nothing is scaled at test time
    kept = model.drop6(torch.ones(10_000))
    assert set(kept.unique().tolist()) == {0.0, 1 / (1 - DROPOUT.p)}
    assert abs(kept.mean().item() - 1.0) < 0.05
    model.eval()
    assert torch.equal(model.drop6(torch.ones(5)), torch.ones(5))


def test_inverted_dropout_trains_differently_from_the_papers() -> None:
    """docs/fidelity.md, dropout: the same initialisation, the same dropout masks and 20 steps of §5's SGD
    (rate 0.01) move fc7 about six times as far under inverted dropout as under §4.2's form."""
    from alexnet.training.optim import PaperSGD, param_groups

    def trained(form: str) -> nn.Module:
        torch.manual_seed(0)
        net = build_model(ModelSpec(input_size=16, width=0.125, fc_units=256, num_classes=10, dropout=form))
        opt = PaperSGD(param_groups(net, "paper", 0.01, 0.0005, 0.9))
        g = torch.Generator().manual_seed(1)
        xs, ys = torch.randn(20, 32, 3, 16, 16, generator=g), torch.randint(0, 10, (20, 32), generator=g)
        torch.manual_seed(2)  # both forms draw their masks with bernoulli_ from here: the same masks
        for x, y in zip(xs, ys):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        return net

    torch.manual_seed(0)
    start = build_model(ModelSpec(input_size=16, width=0.125, fc_units=256, num_classes=10))
    paper, inverted = trained("paper"), trained("inverted")
    moved = {n: [(getattr(m, n).weight - getattr(start, n).weight).norm().item() for m in (paper, inverted)]
             for n in ("fc7", "fc8")}
    assert 4 < moved["fc7"][1] / moved["fc7"][0] < 9 and 1.3 < moved["fc8"][1] / moved["fc8"][0] < 3


def test_features_are_the_last_hidden_layer(paper_model: nn.Module) -> None:
    model = paper_model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (2, 4096)
        assert torch.allclose(model.fc8(feats), model(x), atol=1e-5)
    assert model.conv1_kernels().shape == (96, 3, 11, 11)


def test_tanh_and_one_column_variants() -> None:
    tanh = build_model(ModelSpec(variants=("tanh",)))
    assert not any(isinstance(m, nn.ReLU) for m in tanh.modules())
    assert sum(isinstance(m, nn.Tanh) for m in tanh.modules()) == 7
    one = build_model(ModelSpec(variants=("one-column",))).eval()
    shapes = layer_outputs(one, torch.zeros(1, 3, 224, 224))
    # half the kernels in conv1-conv4, conv5 and the FC layers full size (§3.2 footnote 2)
    assert shapes["conv1"] == (48, 55, 55) and shapes["conv2"] == (128, 27, 27)
    assert shapes["conv3"] == (192, 13, 13) and shapes["conv4"] == (192, 13, 13)
    assert shapes["conv5"] == (256, 13, 13) and shapes["fc6"] == (4096,)
    assert all(m.groups == 1 for m in one.modules() if isinstance(m, nn.Conv2d))


def test_other_variants_shapes() -> None:
    pool2 = build_model(ModelSpec(variants=("pool2",))).eval()
    assert pool2.pool1.kernel_size == 2 and pool2.pool1.stride == 2
    assert layer_outputs(pool2, torch.zeros(1, 3, 224, 224))["pool5"] == (256, 6, 6)  # "equivalent dimensions"
    six = build_model(ModelSpec(variants=("conv6",))).eval()
    names = [n for n, _ in six.named_children()]
    assert names.index("conv6") == names.index("pool5") + 1
    assert names[names.index("conv6") + 1] == "relu_conv6" and names[names.index("fc6") + 1] == "relu6"
    assert not any(isinstance(m, LocalResponseNorm) for m in build_model(ModelSpec(variants=("no-lrn",))).modules())
    assert not any(isinstance(m, nn.Dropout) for m in build_model(ModelSpec(variants=("no-dropout",))).modules())
    assert "conv4" not in dict(build_model(ModelSpec(variants=("no-conv4",))).named_children())


@pytest.mark.parametrize("size", [28, 32, 64])
def test_small_input_scaling(size: int) -> None:
    spec = ModelSpec(input_size=size, width=0.5, fc_units=256, num_classes=10)
    model = build_model(spec).eval()
    out = model(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 10)
    assert spatial_sizes(spec)[-1][1] >= 1


@pytest.mark.parametrize("size, expected", [
    # docs/fidelity.md, small inputs: 5x5 conv1, padding 2, stride 1 up to 48 px, else 2; then the paper's
    # pattern (pool 3/2 without rounding up, conv2 5x5 pad 2, conv3-5 3x3 pad 1), worked out by hand
    (32, {"conv1": 32, "pool1": 15, "conv2": 15, "pool2": 7, "conv5": 7, "pool5": 3}),
    (48, {"conv1": 48, "pool1": 23, "conv2": 23, "pool2": 11, "conv5": 11, "pool5": 5}),
    (49, {"conv1": 25, "pool1": 12, "conv2": 12, "pool2": 5, "conv5": 5, "pool5": 2}),
    (64, {"conv1": 32, "pool1": 15, "conv2": 15, "pool2": 7, "conv5": 7, "pool5": 3}),
])
def test_small_input_maps_by_hand(size: int, expected: dict[str, int]) -> None:
    """The stem's stride boundary (48 px) and pooling that rounds down, in the spec's arithmetic and in the
    built network's actual maps (inputs where rounding up would differ: 29/2 and 13/2 are not whole)."""
    spec = ModelSpec(input_size=size, width=0.25, fc_units=64, num_classes=10)
    sizes = dict(spatial_sizes(spec))
    shapes = layer_outputs(build_model(spec).eval(), torch.zeros(1, 3, size, size))
    for name, side in expected.items():
        assert sizes[name] == side and shapes[name][1:] == (side, side), name
    assert build_model(spec).conv1.kernel_size == (5, 5)


def test_pooled_size_is_torchs_max_pooling_with_and_without_rounding_up() -> None:
    """pooled_size against nn.MaxPool2d itself (ceil_mode: the last window must start inside the map), including
    windows narrower than their stride, where that rule decides."""
    from alexnet.net.model import pooled_size

    for size in range(1, 30):
        for kernel in range(1, 5):
            for stride in range(1, 5):
                if kernel > size:
                    continue
                for ceil in (False, True):
                    pool = nn.MaxPool2d(kernel, stride, ceil_mode=ceil)
                    assert pooled_size(size, kernel, stride, ceil) == pool(torch.zeros(1, 1, size, size)).shape[-1], (
                        size, kernel, stride, ceil)


def test_width_rounds_each_layer_to_the_nearest_multiple_of_four() -> None:
    """docs/fidelity.md: --width scales each conv layer's kernels, rounded to a multiple of 4 (two columns of
    an even count); by hand for 0.35: 96 -> 33.6 -> 32, 256 -> 89.6 -> 88, 384 -> 134.4 -> 136 (not 132: the
    nearest, not the lower multiple); a tiny width keeps 4."""
    wide = build_model(ModelSpec(input_size=64, width=0.35, fc_units=64, num_classes=10))
    assert [wide.get_submodule(n).out_channels for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [
        32, 88, 136, 136, 88]
    tiny = build_model(ModelSpec(input_size=64, width=0.001, fc_units=64, num_classes=10))
    assert tiny.conv1.out_channels == tiny.conv3.out_channels == 4


def test_bad_arguments_are_one_clear_error() -> None:
    with pytest.raises(UserError, match="variant: unknown value 'relu6'; allowed: tanh"):
        ModelSpec(variants=("relu6",))
    with pytest.raises(UserError, match="reading: unknown value 'caffe'; allowed: paper, code2012"):
        ModelSpec(reading="caffe")
    with pytest.raises(UserError, match="num_classes"):
        ModelSpec(num_classes=1)
    smallest = minimum_input_size(ModelSpec())
    with pytest.raises(UserError, match=f"input_size: .* smallest it can take is {smallest}"):
        ModelSpec(input_size=smallest - 1)
    ModelSpec(input_size=smallest)


def test_fan_in_init_keeps_the_paper_gain() -> None:
    from alexnet.net.model import paper_fan_ins

    torch.manual_seed(0)
    spec = ModelSpec(input_size=32, width=0.25, fc_units=256, num_classes=10, init="fan-in")
    model = build_model(spec)
    fans = paper_fan_ins(spec)
    assert fans["conv2"] == 48 * 5 * 5 and fans["fc6"] == 256 * 6 * 6 and fans["fc7"] == ARCH.fc_units
    for name in ("conv2", "conv3", "fc6", "fc7"):
        w = getattr(model, name).weight
        gain = w.std().item() * w[0].numel() ** 0.5
        assert gain == pytest.approx(INIT.weight_std * fans[name] ** 0.5, rel=0.1), name
    # the full-size network is unchanged by the rule
    torch.manual_seed(0)
    a = build_model(ModelSpec(init="fan-in")).conv2.weight
    torch.manual_seed(0)
    assert torch.equal(a, build_model(ModelSpec()).conv2.weight)
    with pytest.raises(UserError, match="init: unknown value"):
        ModelSpec(init="xavier")
