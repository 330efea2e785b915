"""§3.2 model parallelism: the two columns on two devices compute the single-device function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.net.model import ModelSpec, build_model
from alexnet.net.parallel import TwoDeviceAlexNet


@pytest.mark.parametrize("reading", ["paper", "code2012"])
def test_two_devices_compute_the_same_function(reading: str) -> None:
    torch.manual_seed(0)
    spec = ModelSpec(num_classes=10, reading=reading, input_size=32, width=0.25, fc_units=64)
    model = build_model(spec).eval()
    split = TwoDeviceAlexNet(model, ["cpu", "cpu"]).eval()
    x = torch.randn(3, 3, 32, 32) * 50
    assert torch.allclose(split(x), model(x), atol=1e-5, rtol=1e-5)
    # gradients agree too, merged back into the single-device layout
    y = torch.tensor([1, 2, 3])
    nn.functional.cross_entropy(model(x), y).backward()
    nn.functional.cross_entropy(split(x), y).backward()
    merged = {}
    for name in split.names:
        for key in ("weight", "bias"):
            parts = [getattr(split.columns[c][name], key, None) for c in range(2)]
            if isinstance(parts[0], torch.Tensor):
                merged[f"{name}.{key}"] = torch.cat([p.grad for p in parts], 0)
    for key, param in model.named_parameters():
        if key.startswith("fc8"):
            continue
        assert torch.allclose(merged[key], param.grad, atol=1e-5, rtol=1e-4), key


@pytest.mark.slow
def test_full_size_network_and_merged_weights() -> None:
    torch.manual_seed(1)
    model = build_model(ModelSpec()).eval()
    split = TwoDeviceAlexNet(model, ["cpu", "cpu"]).eval()
    x = torch.randn(1, 3, 224, 224) * 50
    assert torch.allclose(split(x), model(x), atol=1e-5, rtol=1e-4)
    merged = split.state_dict_single()
    assert merged.keys() == model.state_dict().keys()
    assert all(torch.equal(merged[k], v) for k, v in model.state_dict().items())


def test_one_column_cannot_be_split() -> None:
    with pytest.raises(UserError, match="two-column"):
        TwoDeviceAlexNet(build_model(ModelSpec(variants=("one-column",), input_size=32, width=0.25, fc_units=32,
                                               num_classes=4)), ["cpu", "cpu"])
