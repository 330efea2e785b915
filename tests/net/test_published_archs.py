"""The published networks as architectures of the builder: torchvision's one-column net and Caffe's bvlc_alexnet."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.net.model import ModelSpec, build_model, count_parameters
from helpers import layer_outputs


def test_owt2014_has_torchvisions_parameter_count() -> None:
    ours = count_parameters(build_model(ModelSpec(arch="owt2014")))
    assert ours == sum(p.numel() for p in torchvision.models.alexnet().parameters()) == 61_100_840
    assert count_parameters(build_model(ModelSpec())) == 60_965_224  # the paper's stays


def test_owt2014_computes_what_torchvisions_class_computes() -> None:
    """Same weights in the same order, same outputs: the builder's arrangement is torchvision's network."""
    torch.manual_seed(0)
    reference = torchvision.models.alexnet().eval()
    ours = build_model(ModelSpec(arch="owt2014")).eval()
    ref_params, our_params = list(reference.parameters()), list(ours.parameters())
    assert [p.shape for p in ref_params] == [p.shape for p in our_params]
    with torch.no_grad():
        for mine, theirs in zip(our_params, ref_params):
            mine.copy_(theirs)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-6
    # dropout on the inputs of fc6 and fc7 (torchvision's classifier: Dropout, Linear, ReLU, Dropout, Linear, ...)
    names = [n for n, _ in ours.named_children()]
    assert names[names.index("flatten"):] == ["flatten", "drop5", "fc6", "relu6", "drop6", "fc7", "relu7", "fc8"]
    assert not any(isinstance(m, nn.LocalResponseNorm) or "lrn" in n for n, m in ours.named_children())


@pytest.mark.parametrize("size,conv1", [(224, 54), (227, 55)])
def test_caffe_pooling_rounds_up_so_224_and_227_both_reach_6x6(size: int, conv1: int) -> None:
    model = build_model(ModelSpec(arch="caffe", input_size=size)).eval()
    shapes = layer_outputs(model, torch.zeros(1, 3, size, size))
    assert shapes["conv1"] == (96, conv1, conv1)
    assert shapes["pool1"] == (96, 27, 27)  # 54 -> 27 only when rounding up (floor: 26)
    assert shapes["pool2"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)
    assert count_parameters(model) == 60_965_224
    x = torch.randn(1, 96, conv1, conv1)
    assert torch.equal(model.pool1(x), nn.MaxPool2d(3, 2, ceil_mode=True)(x))


def test_caffe_lrn_is_k1_alpha_over_n_across_all_maps_after_relu() -> None:
    model = build_model(ModelSpec(arch="caffe")).eval()
    names = [n for n, _ in model.named_children()]
    assert names[:4] == ["conv1", "relu1", "lrn1", "pool1"]
    assert names[4:8] == ["conv2", "relu2", "lrn2", "pool2"]
    assert (model.conv2.groups, model.conv3.groups, model.conv4.groups, model.conv5.groups) == (2, 1, 2, 2)
    a = torch.rand(2, 96, 9, 9) * 300.0  # Caffe's conv1 outputs are hundreds: the normalisation matters
    reference = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)  # Caffe's: alpha / n, across channels
    with torch.no_grad():
        assert torch.allclose(model.lrn1(a), reference(a), rtol=1e-5, atol=1e-5)
        assert (model.lrn1(a) - a).abs().max() > 1.0


@pytest.mark.parametrize("arch", ["owt2014", "caffe"])
def test_published_architectures_built_fresh_start_from_section_5(arch: str) -> None:
    """Built without imported weights (e.g. fc8 of a fine-tune): N(0, 0.01), the paper's biases by layer name."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch=arch))
    assert model.conv2.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(model.conv2.bias == 1.0) and torch.all(model.conv3.bias == 0.0)
    assert torch.all(model.fc7.bias == 1.0) and torch.all(model.fc8.bias == 0.0)


def test_a_spec_without_arch_is_the_paper_network() -> None:
    old = ModelSpec().to_dict()
    del old["arch"]  # checkpoints written before architectures existed
    assert ModelSpec.from_dict(old) == ModelSpec() and ModelSpec().arch == "alexnet2012"


def test_variants_that_change_the_paper_network_are_refused_for_published_ones() -> None:
    with pytest.raises(UserError, match="tanh changes the 2012 network") as err:
        ModelSpec(arch="caffe", variants=("tanh",))
    assert err.value.key == "variant"
    with pytest.raises(UserError, match="unknown value 'resnet'"):
        ModelSpec(arch="resnet")
    model = build_model(ModelSpec(arch="owt2014", variants=("conv6", "no-dropout")))
    assert model.conv6.out_channels == 256 and not any(isinstance(m, nn.Dropout) for m in model.children())


def test_summary_shows_each_architecture(capsys) -> None:
    assert main(["summary", "--arch", "owt2014"]) == 0
    out = capsys.readouterr().out
    assert "arch=owt2014" in out and "61,100,840" in out.splitlines()[-1]
    assert main(["summary", "--arch", "caffe", "--input-size", "227"]) == 0
    assert "60,965,224" in capsys.readouterr().out
    assert main(["summary", "--arch", "lenet"]) == 2
    assert "--arch: unknown value 'lenet'" in capsys.readouterr().err
