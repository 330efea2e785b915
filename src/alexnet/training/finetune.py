"""Pre-train, then fine-tune (§6): start from a checkpoint trained on another class set.

§6: "Training one CNN, with an extra sixth convolutional layer over the last
pooling layer, to classify the entire ImageNet Fall 2011 release ..., and then
'fine-tuning' it on ILSVRC-2012".  :func:`finetune` builds the usual
:class:`alexnet.training.trainer.Trainer` for the new store (the §5 recipe, the chosen
preset and ``--set`` overrides), with the source network's architecture
(reading, variants, width, fc units, input size) plus, with ``add_conv6``, the
sixth conv layer.  Before the first step it copies every source layer into the
new network except the output layer fc8, whose size is the new class count;
fc8 (and a newly added conv6) keep the §5 initialisation the trainer gave them:
weights ~ N(0, INIT.weight_std), fc8 bias ARCH.out_bias_init, conv6 bias
SIXTH.bias_init.  Any other layer whose shape differs is a UserError naming it.

The new run keeps the source's architecture (``model.arch``: a run imported from
published weights stays torchvision's or Caffe's network) and the last step of its
input normalisation (:class:`alexnet.data.norm.InputNorm`: channel order, unit,
per-channel mean and std; and ``data.mean = "none"`` when the source used no
training mean): the copied layers were trained on inputs normalised that way.

The run directory is an ordinary training run (``alexnet train --resume RUN``
continues it) plus ``RUN/finetune.json`` recording the source and which layers
were copied and which are new; a checkpoint is written right after the copy.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from alexnet.inference.trained import TrainedRun
from alexnet.config import Config, DataConfig, apply_overrides, load_config
from alexnet.errors import UserError
from alexnet.net.model import ModelSpec

#: Layers that are always re-initialised: the output layer (its size is the class count).
REPLACED = ("fc8",)
#: The data keys of the input normalisation a fine-tune inherits from its source.
INHERITED_NORM = ("channels", "input_unit", "input_mean", "input_std")


def finetune_config(source_spec: ModelSpec, store: str | Path, *, preset: str = "paper",
                    overrides: list[str] | None = None, add_conv6: bool = False,
                    source_data: DataConfig | None = None) -> Config:
    """The training config of a fine-tune: ``preset``, the source architecture and input normalisation
    (from ``source_data``, the source run's data settings), ``store``, then ``overrides``."""
    config = load_config(preset)
    variants = list(source_spec.variants)
    if add_conv6 and "conv6" not in variants:
        variants.append("conv6")
    config.data.store = str(store)
    config.data.crop = source_spec.input_size
    config.model.reading = source_spec.reading
    config.model.arch = source_spec.arch
    if source_data is not None:
        for key in INHERITED_NORM:
            setattr(config.data, key, copy.deepcopy(getattr(source_data, key)))
        if source_data.mean == "none":  # imported weights: their normalisation replaces a training mean
            config.data.mean = "none"
    config.model.variants = variants
    config.model.width = source_spec.width
    config.model.fc_units = source_spec.fc_units
    config.model.num_classes = 0  # from the new store
    if hasattr(config.model, "init") and hasattr(source_spec, "init"):
        config.model.init = source_spec.init
    return apply_overrides(config, overrides)


def transfer_weights(model: torch.nn.Module, source: dict[str, torch.Tensor], origin: str,
                     new_layers: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Copy ``source`` into ``model`` except the ``new_layers``; returns (copied layers, new layers).

    Raises a UserError naming the first layer that exists on one side only or whose shape differs.
    """
    own = model.state_dict()
    layer = lambda key: key.rsplit(".", 1)[0]  # noqa: E731
    for key, value in source.items():
        if layer(key) in new_layers:
            continue
        if key not in own:
            raise UserError(f"{origin}: layer {layer(key)} of the source network has no place in the new one "
                            f"(the architectures differ beyond fc8 and conv6)")
        if tuple(value.shape) != tuple(own[key].shape):
            raise UserError(f"{origin}: layer {layer(key)} disagrees: source {tuple(value.shape)}, new network "
                            f"{tuple(own[key].shape)} (only fc8 and an added conv6 may differ)")
    for key in own:
        if layer(key) not in new_layers and key not in source:
            raise UserError(f"{origin}: the new network's layer {layer(key)} is not in the source checkpoint "
                            f"(the architectures differ beyond fc8 and conv6)")
    kept = {k: v for k, v in source.items() if layer(k) not in new_layers}
    with torch.no_grad():
        for key, value in kept.items():
            own[key].copy_(value.to(own[key].device, own[key].dtype))
    order = list(dict.fromkeys(layer(k) for k in own))
    copied = [name for name in order if name not in new_layers]
    fresh = [name for name in order if name in new_layers]
    return copied, fresh


def prepare_finetune(
    checkpoint: str | Path,
    store: str | Path,
    out: str | Path,
    *,
    preset: str = "paper",
    overrides: list[str] | None = None,
    add_conv6: bool = False,
    progress: bool = True,
):
    """A :class:`~alexnet.training.trainer.Trainer` for the fine-tune, with the source weights loaded (not yet trained)."""
    from alexnet.training.trainer import Trainer

    source = TrainedRun.open(checkpoint, device="cpu")
    source_spec = source.spec
    config = finetune_config(source_spec, store, preset=preset, overrides=overrides, add_conv6=add_conv6,
                             source_data=source.data)
    trainer = Trainer(config, Path(out), progress=progress)
    new_layers = REPLACED + (("conv6",) if "conv6" in trainer.spec.variants and "conv6" not in source_spec.variants
                             else ())
    copied, fresh = transfer_weights(trainer.model, source.model.state_dict(), str(source.path), new_layers)
    info: dict[str, Any] = {
        "source": str(source.path),
        "source_model_spec": source_spec.to_dict(),
        "source_classes": len(source.classes),
        "source_inputs": _inputs(source),
        "model_spec": trainer.spec.to_dict(),
        "copied_layers": copied,
        "new_layers": fresh,
    }
    if trainer.ctx.main:
        (trainer.run_dir / "finetune.json").write_text(json.dumps(info, indent=2))
    trainer.finetune_info = info
    trainer.save_checkpoint()  # resumable from the first step: the copied weights are in last.pt
    return trainer


def _inputs(source: TrainedRun) -> str:
    try:
        return source.preprocessing
    except UserError as err:  # a source whose training mean is lost still fine-tunes (the new store's is used)
        return f"unknown ({err})"


def finetune(checkpoint: str | Path, store: str | Path, out: str | Path, **kwargs: Any):
    """Load, replace fc8 (and add conv6), and train with the usual recipe; returns the final TrainState."""
    return prepare_finetune(checkpoint, store, out, **kwargs).fit()
