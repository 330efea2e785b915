"""Every number of Krizhevsky, Sutskever & Hinton (NIPS 2012), in one place.

Each frozen dataclass cites the section of ``shared/paper/alexnet.md`` it comes
from.  No other module may write one of these numbers as a literal: import the
constant instead, so that a reader can always trace a value back to the paper.

Two readings exist (see ``docs/fidelity.md``):

* ``paper``    -- the formulas as printed (``PAPER_*`` constants below);
* ``code2012`` -- what the authors' released cuda-convnet configuration ran
  (``CODE2012``), where it differs from the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from alexnet.errors import choice_error


@dataclass(frozen=True)
class ConvLayer:
    """One convolutional layer of Figure 2 / §3.5 (both columns together)."""

    name: str
    out_channels: int
    kernel: int
    stride: int
    padding: int
    groups: int  # 2 = each column sees only its own column's maps (§3.2)
    bias_init: float  # §5


@dataclass(frozen=True)
class Architecture:
    """§3.5 and Figure 2: five conv layers, three fully-connected layers."""

    conv: tuple[ConvLayer, ...] = (
        ConvLayer("conv1", 96, 11, 4, 2, 1, 0.0),
        ConvLayer("conv2", 256, 5, 1, 2, 2, 1.0),
        ConvLayer("conv3", 384, 3, 1, 1, 1, 0.0),
        ConvLayer("conv4", 384, 3, 1, 1, 2, 1.0),
        ConvLayer("conv5", 256, 3, 1, 1, 2, 1.0),
    )
    fc_units: int = 4096  # fc6, fc7 (§3.5)
    fc_bias_init: float = 1.0  # fully-connected hidden layers (§5)
    out_bias_init: float = 0.0  # fc8 (§5)
    num_classes: int = 1000  # ILSVRC (§2)
    columns: int = 2  # two GPUs (§3.2)
    input_size: int = 224  # §3.5, footnote 4 (conv1 padding 2 -> 55x55, fidelity.md)
    conv1_output: int = 55  # Figure 2
    lrn_after: tuple[str, ...] = ("conv1", "conv2")  # §3.5
    pool_after: tuple[str, ...] = ("conv1", "conv2", "conv5")  # §3.5
    parameter_count: int = 60_965_224  # "60 million" (§4); exact count with biases
    # Figure 2 caption's neuron counts; the first is inconsistent (55*55*96 = 290,400).
    figure2_neurons: tuple[int, ...] = (253_440, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000)


@dataclass(frozen=True)
class LRN:
    """§3.3: b = a / (k + alpha * sum_{n adjacent maps} a^2)^beta."""

    k: float = 2.0
    n: int = 5
    alpha: float = 1e-4
    beta: float = 0.75


@dataclass(frozen=True)
class Pooling:
    """§3.4: overlapping max-pooling z = 3, s = 2; the baseline is z = s = 2."""

    size: int = 3
    stride: int = 2
    nonoverlap_size: int = 2
    nonoverlap_stride: int = 2
    gain_top1: float = 0.4  # error points saved vs non-overlapping (§3.4)
    gain_top5: float = 0.3


@dataclass(frozen=True)
class Dropout:
    """§4.2: dropout p = 0.5 in the first two fully-connected layers."""

    p: float = 0.5
    layers: tuple[str, ...] = ("fc6", "fc7")


@dataclass(frozen=True)
class Init:
    """§5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7."""

    weight_std: float = 0.01
    bias_one_layers: tuple[str, ...] = ("conv2", "conv4", "conv5", "fc6", "fc7")


@dataclass(frozen=True)
class Data:
    """§2 and §4.1: preprocessing, training patches, test patches, PCA lighting."""

    image_size: int = 256  # rescale shorter side to 256, central 256x256 patch (§2)
    crop_size: int = 224  # random 224x224 training patches (§4.1)
    translations_factor: int = 2048  # (256-224)^2 * 2 reflections (§4.1)
    test_patches: int = 10  # four corners + centre, and reflections (§4.1)
    pca_std: float = 0.1  # alpha_i ~ N(0, 0.1) (§4.1)
    pca_gain_top1: float = 1.0  # "reduces the top-1 error rate by over 1%" (§4.1)


@dataclass(frozen=True)
class Learning:
    """§5: the optimiser and schedule."""

    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 0.0005
    lr: float = 0.01
    lr_divisor: float = 10.0
    lr_reductions: int = 3
    epochs: int = 90  # "roughly 90 cycles"
    train_images: int = 1_200_000  # "1.2 million images" (§5)
    gpu_days: tuple[float, float] = (5.0, 6.0)  # five to six days on two GTX 580 3GB


@dataclass(frozen=True)
class Code2012:
    """What the authors' released 2012 code ran (facts.md, layers-145.cfg)."""

    lrn_alpha_divided_by_n: bool = True  # layer.py divides the scale by size
    conv1_lrn_before_relu: bool = True  # ReLU folded into pool1
    cnorm2_size: int = 5  # extra same-map (spatial) normalisation after conv2's LRN
    cnorm2_scale: float = 0.001
    cnorm2_pow: float = 0.75
    cnorm2_k: float = 1.0  # cuda-convnet rnorm adds 1 (fidelity.md: ambiguous)
    conv3_5_weight_std: float = 0.03
    bias_weight_decay: bool = False
    bias_lr_multiplier: float = 2.0  # bias epsilon 0.02 = 2 x 0.01
    conv1_pad_bottom_right: int = 3  # 1 + ceil((224 - 11) / 4) = 55
    lr_drop_epochs: tuple[int, ...] = (25, 51, 79)
    stop_epoch: int = 91
    # the log's other hand changes, applied like the drops when that epoch completes:
    conv1_lr_drop_epoch: int = 67  # "epoch 67: set epsw to 0.00001 from 0.0001 on conv1" (its weights / 10)
    colour_noise_off_from_epoch: int = 67  # "set color noise to 0 from 0.1"
    conv1_frozen_from_epoch: int = 72  # "epoch 72: set epsw to 0 on conv1" (the final file: epsW = epsB = 0)
    pca_uses_sqrt_eigenvalues: bool = True
    pca_rescale: float = 1.0 / 1.1
    crop_shared_chunk: int = 32
    final_val_error: tuple[float, float] = (0.4066, 0.1821)
    imagenet_channel_means: tuple[float, float, float] = (127.30, 119.72, 104.91)  # 0-255
    imagenet_pc_std: tuple[float, float, float] = (19.72, 37.09, 121.78)
    conv6_channels: int = 256  # layers-146: 128 + 128 kernels, 3x3, pad 1
    conv6_kernel: int = 3
    neighbours_k: int = 16  # findsimilar.py


@dataclass(frozen=True)
class Sixth:
    """§6: an extra, sixth convolutional layer over the last pooling layer."""

    out_channels: int = 256  # from the 2012 code (layers-146-2011.cfg)
    kernel: int = 3
    padding: int = 1
    groups: int = 2
    bias_init: float = 1.0  # not stated; as conv4/conv5, the other column-local layers (fidelity.md)


@dataclass(frozen=True)
class ErrorPair:
    top1: float
    top5: float


@dataclass(frozen=True)
class Results:
    """§6, Tables 1 and 2 (error rates, percent)."""

    ilsvrc2010_test_10crop: ErrorPair = ErrorPair(37.5, 17.0)
    ilsvrc2010_test_1crop: ErrorPair = ErrorPair(39.0, 18.3)
    ilsvrc2012_val_1cnn: ErrorPair = ErrorPair(40.7, 18.2)
    ilsvrc2012_val_5cnn: ErrorPair = ErrorPair(38.1, 16.4)
    ilsvrc2012_val_1cnn_pretrained: ErrorPair = ErrorPair(39.0, 16.6)
    ilsvrc2012_val_7cnn: ErrorPair = ErrorPair(36.7, 15.4)
    fall2009_sixth_conv: ErrorPair = ErrorPair(67.4, 40.9)
    ensemble_sizes: tuple[int, ...] = (5, 7)
    two_columns_gain: ErrorPair = ErrorPair(1.7, 1.2)  # §3.2
    lrn_gain: ErrorPair = ErrorPair(1.4, 1.2)  # §3.3
    middle_layer_removed_loss_top1: float = 2.0  # §7


@dataclass(frozen=True)
class Cifar:
    """§3.1 (Figure 1) and §3.3: the CIFAR-10 claims."""

    relu_tanh_target_train_error: float = 0.25
    relu_tanh_speedup: float = 6.0
    four_layer_conv: int = 4
    lrn_test_error_without: float = 0.13
    lrn_test_error_with: float = 0.11


@dataclass(frozen=True)
class Retrieval:
    """§6.1: nearest neighbours in the 4096-d last hidden layer."""

    feature_dim: int = 4096
    figure4_neighbours: int = 6
    figure4_queries: int = 5  # Figure 4 (right): five test images, one per row
    figure4_left_images: int = 8
    top_k: int = 5


@dataclass(frozen=True)
class Fall2009:
    """§6: half of each class for training, half for testing."""

    train_fraction: float = 0.5
    classes: int = 10_184


ARCH = Architecture()
LRN_PARAMS = LRN()
POOL = Pooling()
DROPOUT = Dropout()
INIT = Init()
DATA = Data()
LEARNING = Learning()
CODE2012 = Code2012()
SIXTH = Sixth()
RESULTS = Results()
CIFAR = Cifar()
RETRIEVAL = Retrieval()
FALL2009 = Fall2009()



@dataclass(frozen=True)
class Reading:
    """One reading of the paper: the switches where the printed text and the 2012 code differ.

    Code asks these fields (``spec.switches.cnorm2``), never the reading's name.
    """

    name: str
    lrn_alpha_divided_by_n: bool  # §3.3 multiplies the sum by alpha; layer.py by alpha / n
    conv1_lrn_before_relu: bool  # the 2012 code normalised conv1's output before its ReLU
    cnorm2: bool  # the 2012 code's extra same-map normalisation after conv2's LRN
    conv1_implicit_padding: bool  # conv1 output 1 + ceil((224 - 11) / 4): zero rows at bottom/right
    conv3_5_weight_std: float  # §5: 0.01 everywhere; the 2012 code: 0.03 in conv3-conv5
    bias_weight_decay: bool  # the paper is silent; the 2012 code never decayed biases
    bias_lr_multiplier: float  # biases learn at this multiple of the weights' rate
    bias_lr_follows_schedule: bool  # the 2012 log only ever changed epsW: epsB stayed 0.02 to the end
    colour_noise_sqrt_eigenvalues: bool  # §4.1: alpha * lambda; the 2012 code: alpha * sqrt(lambda)
    colour_noise_rescale: float  # the 2012 code scaled noisy, mean-subtracted patches by 1/1.1
    mean_patch_matches_crop: bool  # §2 per-pixel mean, cropped like the image; 2012: its centre patch
    crop_shared_chunk: int  # images per shared crop offset and flip (1: every image its own)


PAPER_READING = Reading(
    name="paper",
    lrn_alpha_divided_by_n=False,
    conv1_lrn_before_relu=False,
    cnorm2=False,
    conv1_implicit_padding=False,
    conv3_5_weight_std=INIT.weight_std,
    bias_weight_decay=True,
    bias_lr_multiplier=1.0,
    bias_lr_follows_schedule=True,
    colour_noise_sqrt_eigenvalues=False,
    colour_noise_rescale=1.0,
    mean_patch_matches_crop=True,
    crop_shared_chunk=1,
)

CODE2012_READING = Reading(
    name="code2012",
    lrn_alpha_divided_by_n=CODE2012.lrn_alpha_divided_by_n,
    conv1_lrn_before_relu=CODE2012.conv1_lrn_before_relu,
    cnorm2=True,
    conv1_implicit_padding=True,
    conv3_5_weight_std=CODE2012.conv3_5_weight_std,
    bias_weight_decay=CODE2012.bias_weight_decay,
    bias_lr_multiplier=CODE2012.bias_lr_multiplier,
    bias_lr_follows_schedule=False,
    colour_noise_sqrt_eigenvalues=CODE2012.pca_uses_sqrt_eigenvalues,
    colour_noise_rescale=CODE2012.pca_rescale,
    mean_patch_matches_crop=False,
    crop_shared_chunk=CODE2012.crop_shared_chunk,
)

#: The readings by name (``model.reading`` in a config).
READING_BY_NAME: dict[str, Reading] = {r.name: r for r in (PAPER_READING, CODE2012_READING)}
READINGS: tuple[str, ...] = tuple(READING_BY_NAME)


def reading(value: "str | Reading") -> Reading:
    """The :class:`Reading` called ``value`` (a Reading passes through); a UserError for an unknown name."""
    if isinstance(value, Reading):
        return value
    if value not in READING_BY_NAME:
        raise choice_error("reading", value, READINGS)
    return READING_BY_NAME[value]
