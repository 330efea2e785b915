"""Initialisations other than §5's N(0, 0.01): He et al.'s fan-in scaling, plain and rescaled.

§5 gives every layer weights of std 0.01 and biases of 1 in conv2, conv4, conv5, fc6
and fc7.  In a network narrower than the paper's that fixed std shrinks the signal at
every layer until the biases alone drive the logits (``alexnet.net.propagation`` shows
it: signal 0.01 at the logits), and the run sits at ln C -- the "bias-1 trap"
(BVLC/caffe#59).  These initialisations keep the image in the logits at any width:

* ``he``: weights N(0, 2 / fan-in), biases 0 (He et al., 2015): the second moment of
  the pre-activations stays constant from layer to layer through ReLUs.  But the
  network's input is in 0..255 units (std ~70 after mean subtraction), so the logits
  start with std ~60 and a loss ~95: unusable at the paper's rates without more.
* ``he-bias``: the same with 0.1 where §5 has 1 (what Caffe's bvlc_alexnet used).
* ``he-scaled``: He with every layer's std multiplied by the same factor
  g = (1 / pixel std) ** (1 / L), L the number of weighted layers (g = 0.58 for 8),
  so that the whole network divides the input's scale by the pixel std and the
  logits start at order 1; scaling every layer alike (not conv1 alone) keeps each
  layer's gradient-to-weight ratio balanced.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from alexnet.paper import CODE2012, INIT
from alexnet.published import CAFFE_BIAS_ONE

#: The initialisations this module provides (``model.init``).
HE_INITS: tuple[str, ...] = ("he", "he-bias", "he-scaled")


def pixel_std() -> float:
    """A natural image's pixel standard deviation per channel in 0..255 units: ~74.4 on ImageNet.

    From the principal components' standard deviations of the 2012 code's data
    statistics: sqrt(sum of the three eigenvalues / 3).  (Measured here: 70 on
    Imagenette's 128-px crops, 63 on CIFAR-10.)
    """
    return math.sqrt(sum(s * s for s in CODE2012.imagenet_pc_std) / 3)


def he_init(model: nn.Module, init: str) -> None:
    """Re-initialise ``model``'s conv and fully-connected layers (its children) with ``init`` (:data:`HE_INITS`).

    The layers §5 gives a bias of 1 (``INIT.bias_one_layers``) get 0.1 under ``he-bias``,
    0 otherwise; every other bias 0.
    """
    layers = [(n, m) for n, m in model.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))]
    gain = (1.0 / pixel_std()) ** (1.0 / len(layers)) if init == "he-scaled" else 1.0
    bias_one = CAFFE_BIAS_ONE if init == "he-bias" else 0.0
    with torch.no_grad():
        for name, module in layers:
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, gain * math.sqrt(2.0 / fan_in))
            if module.bias is not None:
                module.bias.fill_(bias_one if name in INIT.bias_one_layers else 0.0)
