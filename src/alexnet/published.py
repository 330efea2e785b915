"""Numbers of *other* published AlexNets, in one place: torchvision's and Caffe's.

:mod:`alexnet.paper` holds the numbers of the 2012 paper; this module holds those
of the two public sets of ImageNet weights that ``alexnet import`` reads, each
with its source.  They are not the paper's and must not be mistaken for it:

* torchvision's ``IMAGENET1K_V1`` (``alexnet-owt-7be5be79.pth``): the one-column
  network of Krizhevsky's 2014 "One weird trick for parallelizing convolutional
  neural networks" (arXiv:1404.5997), as ``torchvision.models.alexnet`` builds it;
* Caffe's ``bvlc_alexnet`` (BVLC model zoo, ``models/bvlc_alexnet/deploy.prototxt``),
  as the ONNX model zoo's ``bvlcalexnet-12.onnx`` carries it.

No other module may write one of these numbers as a literal (docs/weights.md
says where each comes from).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    """One convolutional layer of a published network (named after the paper's layer it stands for)."""

    name: str
    out_channels: int
    kernel: int
    stride: int
    padding: int
    groups: int


@dataclass(frozen=True)
class Network:
    """A published AlexNet's architecture, as the builder's ``arch`` (:mod:`alexnet.net.model`)."""

    arch: str  # the builder's name for it (ModelSpec.arch)
    title: str
    source: str
    conv: tuple[Conv, ...]
    columns: int  # conv kernels split into this many groups (Figure 3's columns), 1 = none
    lrn_after: tuple[str, ...]  # () = no response normalisation
    lrn_n: int
    lrn_alpha: float
    lrn_beta: float
    lrn_k: float
    lrn_alpha_divided_by_n: bool
    pool_size: int
    pool_stride: int
    pool_ceil: bool  # Caffe rounds pooled sizes up
    pool_after: tuple[str, ...]
    fc_units: int
    dropout_before_fc: bool  # torchvision: Dropout, Linear (fc6, fc7); Caffe: fc, ReLU, Dropout
    dropout: float  # the dropout probability
    input_size: int  # the size the published weights were trained on
    num_classes: int
    parameter_count: int  # with biases, num_classes outputs


#: torchvision.models.alexnet (torchvision/models/alexnet.py): 64-192-384-256-256 kernels, no LRN, no groups.
OWT2014 = Network(
    arch="owt2014",
    title="one-column AlexNet of Krizhevsky 2014 ('one weird trick'), torchvision's alexnet",
    source="torchvision.models.alexnet; A. Krizhevsky, One weird trick for parallelizing convolutional "
           "neural networks, arXiv:1404.5997 (2014)",
    conv=(
        Conv("conv1", 64, 11, 4, 2, 1),
        Conv("conv2", 192, 5, 1, 2, 1),
        Conv("conv3", 384, 3, 1, 1, 1),
        Conv("conv4", 256, 3, 1, 1, 1),
        Conv("conv5", 256, 3, 1, 1, 1),
    ),
    columns=1,
    lrn_after=(),
    lrn_n=0, lrn_alpha=0.0, lrn_beta=0.0, lrn_k=0.0, lrn_alpha_divided_by_n=True,
    pool_size=3,
    pool_stride=2,
    pool_ceil=False,
    pool_after=("conv1", "conv2", "conv5"),
    fc_units=4096,
    dropout_before_fc=True,
    dropout=0.5,
    input_size=224,
    num_classes=1000,
    parameter_count=61_100_840,
)

#: Caffe's models/bvlc_alexnet/deploy.prototxt: groups 2 in conv2/4/5, LRN over all maps (k = 1, alpha / n).
CAFFE = Network(
    arch="caffe",
    title="Caffe's bvlc_alexnet (BVLC model zoo; ONNX model zoo bvlcalexnet-12)",
    source="BVLC Caffe models/bvlc_alexnet/deploy.prototxt; onnx/models vision/classification/alexnet",
    conv=(
        Conv("conv1", 96, 11, 4, 0, 1),
        Conv("conv2", 256, 5, 1, 2, 2),
        Conv("conv3", 384, 3, 1, 1, 1),
        Conv("conv4", 384, 3, 1, 1, 2),
        Conv("conv5", 256, 3, 1, 1, 2),
    ),
    columns=2,
    lrn_after=("conv1", "conv2"),
    lrn_n=5, lrn_alpha=1e-4, lrn_beta=0.75, lrn_k=1.0, lrn_alpha_divided_by_n=True,
    pool_size=3,
    pool_stride=2,
    pool_ceil=True,
    pool_after=("conv1", "conv2", "conv5"),
    fc_units=4096,
    dropout_before_fc=False,
    dropout=0.5,
    input_size=227,
    num_classes=1000,
    parameter_count=60_965_224,
)

NETWORKS: dict[str, Network] = {n.arch: n for n in (OWT2014, CAFFE)}


@dataclass(frozen=True)
class Preprocessing:
    """How a published network's inputs were made from an image.

    Shorter side to ``image_size``, central ``crop`` x ``crop`` patch; then, in
    0..255 pixel units, channels in ``channels`` order, ``x / unit``, minus
    ``mean``, divided by ``std`` (per channel, in the network's channel order).
    """

    image_size: int
    crop: int
    unit: float  # 255: inputs in 0..1 (torchvision's ToTensor); 1: 0..255 units (Caffe)
    mean: tuple[float, float, float]
    std: tuple[float, float, float] | None  # None: not divided
    channels: str  # "RGB" or "BGR"
    description: str


@dataclass(frozen=True)
class Accuracy:
    """A published accuracy (percent) and how it was measured."""

    top1: float
    top5: float
    protocol: str
    source: str


@dataclass(frozen=True)
class Weights:
    """One public set of ImageNet weights."""

    format: str  # the ``alexnet import`` format that reads it
    name: str
    file_name: str
    network: Network
    preprocessing: Preprocessing
    accuracy: Accuracy
    sha256_prefix: str  # "" when the publisher gives none


TORCHVISION = Weights(
    format="torchvision",
    name="torchvision AlexNet_Weights.IMAGENET1K_V1",
    file_name="alexnet-owt-7be5be79.pth",
    network=OWT2014,
    preprocessing=Preprocessing(
        image_size=256, crop=224, unit=255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        channels="RGB",
        description="Resize(256), CenterCrop(224), ToTensor (0..1), Normalize(mean=(0.485, 0.456, 0.406), "
                    "std=(0.229, 0.224, 0.225)), RGB",
    ),
    accuracy=Accuracy(56.522, 79.066, "ILSVRC-2012 val, centre 224 of the image resized to 256",
                      "torchvision AlexNet_Weights.IMAGENET1K_V1.meta['_metrics']"),
    sha256_prefix="7be5be79",  # torch.hub's convention: the file name carries its sha256's first 8 digits
)

BVLC = Weights(
    format="onnx",
    name="Caffe bvlc_alexnet (ONNX model zoo bvlcalexnet-12)",
    file_name="bvlcalexnet-12.onnx",
    network=CAFFE,
    preprocessing=Preprocessing(
        image_size=256, crop=224, unit=1.0, mean=(104.0, 117.0, 123.0), std=None, channels="BGR",
        description="image to 256, centre crop of the graph's input size, BGR, 0..255 minus the channel "
                    "means (104, 117, 123) in B, G, R order",
    ),
    accuracy=Accuracy(57.1, 80.2, "ILSVRC-2012 val, centre crop (227 of the 256x256 image)",
                      "BVLC Caffe models/bvlc_alexnet/readme.md"),
    sha256_prefix="",
)

WEIGHTS: dict[str, Weights] = {w.format: w for w in (TORCHVISION, BVLC)}


@dataclass(frozen=True)
class OnnxLRNDefaults:
    """The ONNX operator ``LRN``'s attribute defaults (onnx/docs/Operators.md, LRN-1 and LRN-13)."""

    alpha: float = 1e-4
    beta: float = 0.75
    bias: float = 1.0


ONNX_LRN_DEFAULTS = OnnxLRNDefaults()


#: Caffe's bvlc_alexnet train_val.prototxt fills the biases that §5 sets to 1 (conv2, conv4, conv5, fc6, fc7)
#: with 0.1 instead: BVLC/caffe's history records that 1 "gave flat loss".  Used by ``model.init = "he-bias"``.
CAFFE_BIAS_ONE = 0.1
