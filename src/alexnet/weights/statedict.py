"""torchvision's AlexNet state dict (``alexnet-owt-7be5be79.pth``) -> the builder's ``owt2014`` network.

torchvision's ``AlexNet`` is ``features`` (Conv, ReLU, MaxPool, Conv, ReLU, MaxPool,
Conv, ReLU, Conv, ReLU, Conv, ReLU, MaxPool), ``avgpool`` (``AdaptiveAvgPool2d(6)``,
the identity at 224) and ``classifier`` (Dropout, Linear, ReLU, Dropout, Linear, ReLU,
Linear); its state dict names the weighted layers by position.  :data:`LAYERS` maps
them to the paper's names; every tensor is checked against the shape the builder
gives that layer, and the first key that is missing, extra or of another shape is
named in the error.  The file is read with ``weights_only=True`` (no code runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from alexnet.errors import UserError
from alexnet.inference.trained import KIND, strip_module_prefix
from alexnet.net.model import ModelSpec, build_model
from alexnet.published import OWT2014
from alexnet.weights.runs import Imported, first_sentence

#: torchvision's module paths -> the builder's layer names.
LAYERS: dict[str, str] = {
    "features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
    "features.10": "conv5", "classifier.1": "fc6", "classifier.4": "fc7", "classifier.6": "fc8",
}
EXPECTED_KEYS: tuple[str, ...] = tuple(f"{m}.{p}" for m in LAYERS for p in ("weight", "bias"))
WHAT = "torchvision's AlexNet"


def load_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a ``torch.save``d state dict (or of a checkpoint dict holding one under model/state_dict)."""
    if not path.is_file():
        raise UserError(f"{path} does not exist", key="file")
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged, truncated or foreign files
        first = first_sentence(err)
        raise UserError(f"{path} is not a readable PyTorch state dict (truncated, or another format?): "
                        f"{first}") from None
    if isinstance(data, dict) and data.get("kind") == KIND:
        raise UserError(f"{path} is already an alexnet checkpoint: use it as RUN directly", key="file")
    if isinstance(data, dict):
        for key in ("model", "state_dict"):  # torchvision's reference scripts save {"model": ..., ...}
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(v, Tensor) for v in data.values()):
        raise UserError(f"{path} holds no state dict (a dict of tensors); save model.state_dict()", key="file")
    return strip_module_prefix({str(k): v for k, v in data.items()})


def first_key_mismatch(keys: list[str]) -> str | None:
    """The first key missing (in torchvision's order) or extra (in the file's order), as words; None if none."""
    present = set(keys)
    for key in EXPECTED_KEYS:
        if key not in present:
            layer = LAYERS[key.rsplit(".", 1)[0]]
            return f"it lacks {key} ({layer}'s {key.rsplit('.', 1)[1]})"
    for key in keys:
        if key not in EXPECTED_KEYS:
            return f"it has {key}, which {WHAT} does not"
    return None


def read_torchvision(path: Path) -> Imported:
    """torchvision's AlexNet state dict at ``path`` as the builder's ``owt2014`` network."""
    state = load_state_dict(path)
    problem = first_key_mismatch(list(state))
    if problem:
        raise UserError(f"{path} is not {WHAT}: {problem}")
    num_classes = int(state["classifier.6.weight"].shape[0]) if state["classifier.6.weight"].dim() == 2 else 0
    if num_classes < 2:
        raise UserError(f"{path}: classifier.6.weight (fc8) has shape {tuple(state['classifier.6.weight'].shape)}; "
                        f"{WHAT} has (classes, 4096)")
    spec = ModelSpec(arch=OWT2014.arch, num_classes=num_classes, input_size=OWT2014.input_size)
    with torch.device("meta"):  # the builder's shapes only
        own = build_model(spec).state_dict()
    out: dict[str, Tensor] = {}
    for key in EXPECTED_KEYS:
        module, param = key.rsplit(".", 1)
        ours = f"{LAYERS[module]}.{param}"
        value = state[key]
        if tuple(value.shape) != tuple(own[ours].shape):
            raise UserError(f"{path} is not {WHAT}: {key} ({LAYERS[module]}) has shape {tuple(value.shape)}, "
                            f"{WHAT} {tuple(own[ours].shape)}")
        if not value.is_floating_point():
            raise UserError(f"{path}: {key} holds {value.dtype} numbers, not floating point")
        if not torch.isfinite(value).all():
            raise UserError(f"{path}: {key} ({LAYERS[module]}) holds NaN or infinite values")
        out[ours] = value
    details = {"layers": {m: LAYERS[m] for m in LAYERS}, "dtype": str(state["features.0.weight"].dtype)}
    return Imported(spec, out, details)
