"""Evaluation with the centre patch and with the ten patches of §4.1.

Ten-patch prediction averages the *softmax outputs* of the four corner
patches, the centre patch and their reflections (§4.1).  Results are printed
in the shape of the paper's Table 2 and saved in an output folder ``OUT``:

    OUT/eval.json           errors per mode, per-class errors, the class table, provenance
    OUT/eval.md             the Table 2-shaped table and the per-class table (Markdown)
    OUT/probs_centre.npy    float32 (N, C): softmax of the centre patch, per image
    OUT/probs_ten.npy       float32 (N, C): softmax averaged over the ten patches, per image
    OUT/labels.npy          int64 (N,): the true class of every image
    OUT/predictions.tsv     per image: index, source path, label, top-1 class, p(label)

so that ``alexnet ensemble`` needs no recomputation.  Under ``torchrun`` every
process evaluates a contiguous share of the split (each image exactly once),
the shares' probabilities are summed across processes (every other row is
zero) and only rank 0 writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from alexnet.data.batches import Augmentation, EvalBatches, loader
from alexnet.errors import UserError
from alexnet.inference.scoring import probabilities, topk_error_rates, topk_hits
from alexnet.paper import ARCH, RESULTS, ErrorPair
from alexnet.data.store import Store, manifest_digest, verify_for_use
from alexnet.inference.trained import TrainedRun
from alexnet.runtime import distributed

#: Row names of the modes in the tables.
MODE_NAMES = {"centre": "1 CNN, centre patch", "ten": "1 CNN, ten patches (§4.1)"}

#: The paper's own rows (§6, Tables 1 and 2), shown in italics under tables of 1000-class results.
PAPER_ROWS: tuple[tuple[str, ErrorPair], ...] = (
    ("paper: 1 CNN, ILSVRC-2010 test, centre only (footnote 5)", RESULTS.ilsvrc2010_test_1crop),
    ("paper: 1 CNN, ILSVRC-2010 test, ten patches", RESULTS.ilsvrc2010_test_10crop),
    ("paper: 1 CNN, ILSVRC-2012 val", RESULTS.ilsvrc2012_val_1cnn),
    ("paper: 5 CNNs, ILSVRC-2012 val", RESULTS.ilsvrc2012_val_5cnn),
)


def error_table(rows: Sequence[tuple[str, float, float]], split: str, images: int, num_classes: int) -> str:
    """Markdown table shaped like the paper's Table 2: Model | Top-1 (split) | Top-5 (split), in percent.

    ``rows`` hold (name, top-1 error, top-5 error) as fractions.  With the
    paper's class count the paper's own results are appended in italics, as
    Table 2 sets others' results.
    """
    lines = [f"| Model ({images} images, {num_classes} classes) | Top-1 ({split}) | Top-5 ({split}) |",
             "|---|---|---|"]
    for name, e1, e5 in rows:
        lines.append(f"| {name} | {100 * e1:.1f}% | {100 * e5:.1f}% |")
    if num_classes == ARCH.num_classes:
        for name, pair in PAPER_ROWS:
            lines.append(f"| *{name}* | *{pair.top1:.1f}%* | *{pair.top5:.1f}%* |")
    return "\n".join(lines)


@dataclass
class EvalResult:
    """Errors (fractions) per mode, with the probabilities behind them."""

    split: str
    labels: np.ndarray
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    classes: list[tuple[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    published: dict[str, Any] | None = None  # imported weights: their publisher's accuracy (alexnet import)

    @property
    def num_classes(self) -> int:
        return next(iter(self.probs.values())).shape[1] if self.probs else len(self.classes)

    def errors(self) -> dict[str, float]:
        out = {}
        for mode, p in self.probs.items():
            e1, e5 = topk_error_rates(p, self.labels)
            out[f"{mode}_top1_error"], out[f"{mode}_top5_error"] = e1, e5
        return out

    def per_class(self, mode: str) -> list[dict[str, Any]]:
        """Top-1 and top-5 error of each class's images (None for a class without images)."""
        p = self.probs[mode]
        hit1, hit5 = topk_hits(p, self.labels, 1).numpy(), topk_hits(p, self.labels, 5).numpy()
        rows = []
        classes = self.classes or [(str(c), str(c)) for c in range(p.shape[1])]
        for c, (wnid, name) in enumerate(classes):
            mask = self.labels == c
            n = int(mask.sum())
            rows.append({"class": c, "wnid": wnid, "name": name, "images": n,
                         "top1_error": float(1 - hit1[mask].mean()) if n else None,
                         "top5_error": float(1 - hit5[mask].mean()) if n else None})
        return rows

    def table(self) -> str:
        """Markdown table shaped like the paper's Table 2 (error rates in percent)."""
        errs = self.errors()
        rows = [(MODE_NAMES.get(m, m), errs[f"{m}_top1_error"], errs[f"{m}_top5_error"]) for m in self.probs]
        return error_table(rows, self.split, len(self.labels), self.num_classes)

    def per_class_table(self, mode: str | None = None) -> str:
        mode = mode or ("ten" if "ten" in self.probs else next(iter(self.probs)))
        lines = [f"| class | wnid | name | images | top-1 error ({mode}) | top-5 error ({mode}) |",
                 "|---|---|---|---|---|---|"]
        for r in self.per_class(mode):
            e1 = "—" if r["top1_error"] is None else f"{100 * r['top1_error']:.1f}%"
            e5 = "—" if r["top5_error"] is None else f"{100 * r['top5_error']:.1f}%"
            lines.append(f"| {r['class']} | {r['wnid']} | {r['name']} | {r['images']} | {e1} | {e5} |")
        return "\n".join(lines)

    def save(self, out: Path, extra: dict[str, Any] | None = None) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for mode, p in self.probs.items():
            np.save(out / f"probs_{mode}.npy", p.astype(np.float32))
        np.save(out / "labels.npy", self.labels.astype(np.int64))
        summary = {"split": self.split, "images": int(len(self.labels)), "num_classes": self.num_classes,
                   "modes": list(self.probs), **self.errors(), **(extra or {}),
                   "classes": [list(c) for c in self.classes],
                   "per_class": {mode: self.per_class(mode) for mode in self.probs}}
        (out / "eval.json").write_text(json.dumps(summary, indent=2))
        (out / "eval.md").write_text(self.table() + "\n\nPer class:\n\n" + self.per_class_table() + "\n")
        self._save_predictions(out / "predictions.tsv")

    def _save_predictions(self, path: Path) -> None:
        mode = "ten" if "ten" in self.probs else next(iter(self.probs))
        p = self.probs[mode]
        names = [w for w, _ in self.classes] or [str(c) for c in range(p.shape[1])]
        top = p.argmax(1)
        lines = [f"index\tpath\tlabel\tpredicted_{mode}\tp_label\tp_predicted"]
        for i, (y, t) in enumerate(zip(self.labels.tolist(), top.tolist())):
            src = self.paths[i] if i < len(self.paths) else ""
            label = names[y] if 0 <= y < len(names) else str(y)
            p_label = f"{p[i, y]:.6f}" if 0 <= y < p.shape[1] else ""
            lines.append(f"{i}\t{src}\t{label}\t{names[t]}\t{p_label}\t{p[i, t]:.6f}")
        path.write_text("\n".join(lines) + "\n")


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    store: Store,
    *,
    split: str,
    augment: Augmentation,
    modes: tuple[str, ...] = ("centre", "ten"),
    batch_size: int = 64,
    device: torch.device | None = None,
    workers: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Probabilities of every image of ``split`` with each mode; under torchrun each image is counted once.

    ``augment`` is the test-time transform (crop size and the *training* mean:
    :meth:`alexnet.inference.trained.TrainedRun.augmentation`).
    """
    device = device or torch.device("cpu")
    ctx = distributed(device.type)
    model = model.to(device).eval()
    part = store.split(split)
    n = len(part)
    probs: dict[str, np.ndarray] = {}
    for mode in modes:
        ds = EvalBatches(part, batch_size=batch_size, rank=ctx.rank, world=ctx.world, augment=augment, patches=mode)
        out = np.zeros((n, store.num_classes), dtype=np.float32)
        batches = loader(ds, workers=workers)
        if progress and ctx.main:
            from tqdm import tqdm

            batches = tqdm(batches, total=len(ds), desc=f"eval {mode}", unit="batch", leave=False)
        for x, _, idx in batches:
            out[idx.numpy()] = probabilities(model, x.to(device)).cpu().numpy()
        if ctx.world > 1:  # every rank filled its own rows; the others are zero, so the sum is exact
            t = torch.from_numpy(out).to(device)
            dist.all_reduce(t)
            out = t.cpu().numpy()
        probs[mode] = out
    try:
        paths = part.paths()
    except (OSError, KeyError):
        paths = []
    return EvalResult(split, part.labels.copy(), probs, list(store.classes), paths)


def check_modes(modes: tuple[str, ...]) -> None:
    for mode in modes:
        if mode not in MODE_NAMES:
            raise UserError(f"unknown value {mode!r}; allowed: {', '.join(MODE_NAMES)}", key="patches")


def evaluate(run: TrainedRun, store: Store, *, split: str | None = None, modes: tuple[str, ...] = ("centre", "ten"),
             batch_size: int = 64, workers: int = 0, progress: bool = True) -> EvalResult:
    """A trained run's probabilities on ``split`` of ``store`` (default: val, else test), the training mean subtracted."""
    check_modes(modes)
    if batch_size < 1:
        raise UserError(f"must be at least 1, got {batch_size}", key="batch_size")
    run.check_classes(store)
    split = store.evaluation_split(split)
    return evaluate_model(run.model, store, split=split, augment=run.augmentation(store.image_size), modes=modes,
                          batch_size=batch_size, device=run.device, workers=workers, progress=progress)


def evaluate_checkpoint(
    source: str | Path,
    store_path: str | Path,
    *,
    split: str | None = None,
    out: str | Path | None = None,
    modes: tuple[str, ...] = ("centre", "ten"),
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = True,
) -> EvalResult:
    """Open a run or checkpoint, evaluate it on ``store_path``, and save the results in ``out`` (rank 0)."""
    check_modes(modes)
    run = TrainedRun.open(source, device=device)
    store = Store(store_path)
    verify_for_use(store, [store.evaluation_split(split)], "auto")  # a flipped byte in a small store: one line
    result = evaluate(run, store, split=split, modes=modes, batch_size=batch_size, progress=progress)
    result.published = (run.source or {}).get("published_accuracy")
    if out is not None and distributed(run.device.type).main:
        extra = {"checkpoint": str(run.path), "store": str(store.path.resolve()),
                 "store_manifest_sha256": manifest_digest(store),
                 "images_sha256": store.manifest["splits"][result.split]["paths"]["sha256"],
                 "reading": run.spec.reading, "arch": run.spec.arch, "mean": run.preprocessing}
        if result.published:
            extra["weights"] = result.published
        result.save(Path(out), extra)
    return result
