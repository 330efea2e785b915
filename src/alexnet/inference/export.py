"""Export a trained network to ONNX or TorchScript, and check the export against PyTorch.

The network's :class:`alexnet.net.lrn.LocalResponseNorm` runs a custom
``autograd.Function`` (a hand-written backward for speed), which neither the
ONNX exporter nor TorchScript can see through.  For export every such layer is
swapped for :class:`PlainLRN`, the same §3.3 formula written with ordinary
tensor ops (square, pad, sum of ``n`` shifted slices, pow), on a copy of the
model; :func:`plain_model` makes the copy and the tests pin that both give the
same outputs.  The exported graph maps mean-subtracted (B, 3, S, S) float32
patches to fc8's logits (apply softmax for probabilities); the sidecar
``FILE.json`` records the input size, the preprocessing and the class table,
and ``FILE.mean.npy`` the mean image to subtract, when it can be found.

After writing, the file is loaded back (onnxruntime for ONNX, ``torch.jit.load``
for TorchScript), run on a random batch and compared with the PyTorch model; the
largest absolute difference of the logits is reported.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from contextlib import redirect_stdout, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from alexnet.inference.trained import TrainedRun
from alexnet.errors import UserError
from alexnet.net.lrn import LocalResponseNorm

FORMATS = ("onnx", "torchscript")
#: Exported logits may differ from PyTorch's by float32 rounding; beyond this (relative to the
#: largest logit, at least 1) the export is reported as wrong.
TOLERANCE = 1e-3
ONNX_OPSET = 17


class PlainLRN(nn.Module):
    """§3.3 cross-map LRN with plain tensor ops (exportable); equals :class:`LocalResponseNorm`'s forward.

    ``alpha`` is the effective coefficient of the sum (already divided by ``n``
    when the reading divides alpha by n); channels split into ``groups`` columns
    whose windows do not cross.
    """

    def __init__(self, n: int, alpha: float, beta: float, k: float, groups: int) -> None:
        super().__init__()
        self.n, self.alpha, self.beta, self.k, self.groups = n, alpha, beta, k, groups

    @classmethod
    def like(cls, lrn: LocalResponseNorm) -> "PlainLRN":
        return cls(lrn.n, lrn.effective_alpha, lrn.beta, lrn.k, lrn.groups)

    def forward(self, a: Tensor) -> Tensor:
        c, h, w = a.shape[1], a.shape[2], a.shape[3]
        per = c // self.groups
        before, after = self.n // 2, (self.n - 1) // 2
        sq = (a * a).reshape(-1, self.groups, per, h, w)
        padded = F.pad(sq, (0, 0, 0, 0, before, after))
        total = padded[:, :, 0:per]
        for i in range(1, self.n):
            total = total + padded[:, :, i : i + per]
        d = self.k + self.alpha * total
        return a * d.pow(-self.beta).reshape(a.shape)

    def extra_repr(self) -> str:
        return f"n={self.n}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"


def plain_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every LocalResponseNorm replaced by a :class:`PlainLRN`."""
    out = copy.deepcopy(model).cpu().eval()
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LocalResponseNorm):
                setattr(parent, name, PlainLRN.like(child))
    return out


@dataclass
class ExportReport:
    path: Path
    format: str
    max_difference: float | None  # None: could not be checked (no runtime)
    checked_with: str
    batch: int

    @property
    def ok(self) -> bool:
        return self.max_difference is None or self.max_difference <= self._limit

    _limit: float = TOLERANCE

    def summary(self) -> str:
        if self.max_difference is None:
            return f"exported {self.path} ({self.format}); not checked: {self.checked_with}"
        verdict = "ok" if self.ok else f"TOO LARGE (limit {self._limit:.1e})"
        return (f"exported {self.path} ({self.format}); max |difference| of the logits against PyTorch on a "
                f"random batch of {self.batch}, via {self.checked_with}: {self.max_difference:.3e} ({verdict})")


def _quiet():
    """Silence the exporters' chatter (warnings, progress lines)."""
    class _Ctx:
        def __enter__(self):
            self.w = warnings.catch_warnings()
            self.w.__enter__()
            warnings.simplefilter("ignore")
            self.out, self.err = redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO())
            self.out.__enter__()
            self.err.__enter__()
            return self

        def __exit__(self, *exc):
            self.err.__exit__(*exc)
            self.out.__exit__(*exc)
            return self.w.__exit__(*exc)

    return _Ctx()


def _export_onnx(model: nn.Module, example: Tensor, out: Path) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("onnx needs the onnx package (pip install onnx onnxruntime); or use torchscript",
                        key="format") from None
    with _quiet():
        torch.onnx.export(
            model, (example,), str(out), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["images"], output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )


def _run_onnx(path: Path, x: Tensor) -> np.ndarray | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _export_torchscript(model: nn.Module, example: Tensor, out: Path) -> None:
    with _quiet():
        traced = torch.jit.trace(model, (example,), check_trace=False)
        torch.jit.save(traced, str(out))


def _run_torchscript(path: Path, x: Tensor) -> np.ndarray:
    with _quiet():
        loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return loaded(x).numpy()


def _sidecar(out: Path, run: TrainedRun, fmt: str) -> None:
    spec = run.spec
    info: dict[str, Any] = {
        "format": fmt, "source": str(run.path), "model_spec": spec.to_dict(),
        "input": {"name": "images", "shape": ["batch", 3, spec.input_size, spec.input_size], "dtype": "float32",
                  "preprocessing": "RGB in 0..255 units minus the training set's mean (the mean image's "
                                   "centre patch, FILE.mean.npy), channels first"},
        "output": {"name": "logits", "shape": ["batch", spec.num_classes], "note": "apply softmax for probabilities"},
        "classes": [list(c) for c in run.classes],
    }
    if not run.norm.identity:  # the last step of the pipeline (imported weights: their publisher's)
        info["input"]["normalisation"] = run.norm.to_dict()
    if run.source:
        info["weights"] = run.source
    if run.data.mean == "none":
        info["input"]["image_size"] = run.image_size
        info["input"]["preprocessing"] = (f"image rescaled (shorter side {run.image_size}) and centre-cropped to "
                                          f"{spec.input_size}, then {run.norm.describe()}, channels first")
    else:
        np.save(out.with_name(out.name + ".mean.npy"), run.mean_image.astype(np.float32))
        info["mean"] = {"file": out.name + ".mean.npy", "from": run.mean_source, "shape": list(run.mean_image.shape)}
        if not run.norm.identity:
            info["input"]["preprocessing"] += f", then {run.norm.describe()}"
    out.with_name(out.name + ".json").write_text(json.dumps(info, indent=2))


def export(source: str | Path, out: str | Path, *, fmt: str = "onnx", batch_size: int = 4, seed: int = 0) -> ExportReport:
    """Export ``source`` (run or checkpoint) to ``out`` and compare the export with PyTorch on a random batch."""
    if fmt not in FORMATS:
        raise UserError(f"unknown value {fmt!r}; allowed: {', '.join(FORMATS)}", key="format")
    if batch_size < 1:
        raise UserError(f"must be at least 1, got {batch_size}", key="batch_size")
    run = TrainedRun.open(source, device="cpu")
    model = run.model
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a directory; give a file name such as "
                        f"{out / ('model.' + ('onnx' if fmt == 'onnx' else 'pt'))}", key="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    plain = plain_model(model)
    size = model.spec.input_size
    g = torch.Generator().manual_seed(seed)
    example = torch.randn(2, 3, size, size, generator=g)
    x = torch.randn(batch_size, 3, size, size, generator=g)
    if run.norm.unit == 1.0 and run.norm.std is None:
        x = x * 50.0  # mean-subtracted pixels in 0..255 units are tens of units; scaled ones about 1
    with torch.no_grad():
        reference = model(x).numpy()
    try:
        if fmt == "onnx":
            _export_onnx(plain, example, out)
            got = _run_onnx(out, x)
            via = "onnxruntime" if got is not None else "onnxruntime is not installed (pip install onnxruntime)"
        else:
            _export_torchscript(plain, example, out)
            got, via = _run_torchscript(out, x), "torch.jit.load"
    except UserError:
        raise
    except OSError as err:
        raise UserError(f"{out}: cannot write ({err.strerror or err})", key="out") from None
    _sidecar(out, run, fmt)
    diff = None if got is None else float(np.abs(got - reference).max())
    report = ExportReport(out, fmt, diff, via, batch_size)
    report._limit = TOLERANCE * max(1.0, float(np.abs(reference).max()))
    return report
