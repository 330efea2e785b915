"""Evaluation with the centre patch and with the ten patches of §4.1.

Ten-patch prediction averages the *softmax outputs* of the four corner
patches, the centre patch and their reflections (§4.1).  Results are printed
in the shape of the paper's Table 2 and saved as JSON and Markdown, with the
averaged probabilities of every image (``probs_centre.npy``, ``probs_ten.npy``)
so that ensembles need no recomputation, and per-class errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from alexnet.checkpoint import load_model
from alexnet.config import DataConfig, config_from_dict
from alexnet.data import Augmentation, EvalBatches, loader
from alexnet.errors import UserError
from alexnet.store import Store


@dataclass
class EvalResult:
    """Errors (fractions) per mode, with the probabilities behind them."""

    split: str
    labels: np.ndarray
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    classes: list[tuple[str, str]] = field(default_factory=list)

    def errors(self) -> dict[str, float]:
        out = {}
        for mode, p in self.probs.items():
            e1, e5 = topk_error_rates(p, self.labels)
            out[f"{mode}_top1_error"], out[f"{mode}_top5_error"] = e1, e5
        return out

    def per_class(self, mode: str) -> list[dict[str, Any]]:
        pred = self.probs[mode].argmax(1)
        rows = []
        for c, (wnid, name) in enumerate(self.classes):
            mask = self.labels == c
            n = int(mask.sum())
            rows.append({"class": c, "wnid": wnid, "name": name, "images": n,
                         "top1_error": float((pred[mask] != c).mean()) if n else None})
        return rows

    def table(self) -> str:
        """Markdown table shaped like the paper's Table 2 (error rates in percent)."""
        errs = self.errors()
        lines = [f"| Model ({self.split}, {len(self.labels)} images) | Top-1 | Top-5 |", "|---|---|---|"]
        names = {"centre": "1 CNN, centre patch", "ten": "1 CNN, ten patches (§4.1)"}
        for mode in self.probs:
            lines.append(f"| {names.get(mode, mode)} | {100 * errs[f'{mode}_top1_error']:.1f}% | "
                         f"{100 * errs[f'{mode}_top5_error']:.1f}% |")
        return "\n".join(lines)

    def save(self, out: Path, extra: dict[str, Any] | None = None) -> None:
        out.mkdir(parents=True, exist_ok=True)
        for mode, p in self.probs.items():
            np.save(out / f"probs_{mode}.npy", p.astype(np.float32))
        np.save(out / "labels.npy", self.labels)
        summary = {"split": self.split, "images": int(len(self.labels)), **self.errors(), **(extra or {}),
                   "per_class": {mode: self.per_class(mode) for mode in self.probs}}
        (out / "eval.json").write_text(json.dumps(summary, indent=2))
        (out / "eval.md").write_text(self.table() + "\n")


def topk_error_rates(probs: np.ndarray, labels: np.ndarray, ks: tuple[int, int] = (1, 5)) -> tuple[float, float]:
    """Top-1 and top-5 error of (N, C) scores against (N,) labels."""
    k = min(max(ks), probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    hit = top == labels[:, None]
    return tuple(float(1 - hit[:, : min(kk, k)].any(1).mean()) for kk in ks)  # type: ignore[return-value]


def ten_patch_probabilities(model: nn.Module, views: Tensor) -> Tensor:
    """(B, 10, 3, c, c) -> (B, C): the mean of the ten patches' softmax outputs (§4.1)."""
    b, v = views.shape[:2]
    logits = model(views.flatten(0, 1))
    return logits.float().softmax(1).view(b, v, -1).mean(1)


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    store: Store,
    *,
    split: str,
    data: DataConfig,
    reading: str,
    modes: tuple[str, ...] = ("centre", "ten"),
    batch_size: int = 64,
    device: torch.device | None = None,
    workers: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Probabilities of every image of ``split`` with each mode; under torchrun each image is counted once."""
    rank, world = _dist()
    device = device or torch.device("cpu")
    model = model.to(device).eval()
    part = store.split(split)
    augment = Augmentation.from_config(data, store.stats(), reading)
    n = len(part)
    probs: dict[str, np.ndarray] = {}
    for mode in modes:
        ds = EvalBatches(part, batch_size=batch_size, rank=rank, world=world, augment=augment, patches=mode)
        out = np.zeros((n, store.num_classes), dtype=np.float32)
        batches = loader(ds, workers=workers)
        if progress and rank == 0:
            from tqdm import tqdm

            batches = tqdm(batches, total=len(ds), desc=f"eval {mode}", unit="batch", leave=False)
        for x, _, idx in batches:
            x = x.to(device)
            p = ten_patch_probabilities(model, x) if mode == "ten" else model(x).float().softmax(1)
            out[idx.numpy()] = p.cpu().numpy()
        if world > 1:  # every rank filled its own rows; the others are zero
            t = torch.from_numpy(out).to(device)
            dist.all_reduce(t)
            out = t.cpu().numpy()
        probs[mode] = out
    return EvalResult(split, part.labels.copy(), probs, store.classes)


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
    """Load a run or checkpoint, evaluate it on ``store_path``, and save the results in ``out``."""
    model, ckpt = load_model(source)
    store = Store(store_path)
    known = [tuple(c) for c in ckpt.get("classes", [])]
    if known and [tuple(c) for c in store.classes] != known:
        unknown = [w for w, _ in store.classes if w not in {k[0] for k in known}]
        detail = f"classes it does not know: {', '.join(unknown[:5])}" if unknown else "its classes in another order"
        raise UserError(f"store {store.path} does not match the checkpoint {ckpt['path']}: the store has {detail}")
    if split is None:
        split = next((s for s in ("val", "test") if s in store.splits()), None)
        if split is None:
            raise UserError(f"store {store.path} has no val or test split; name one with --split")
    data = config_from_dict(ckpt["config"]).data if "config" in ckpt else DataConfig()
    if data.crop != model.spec.input_size:
        data.crop = model.spec.input_size
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    result = evaluate_model(model, store, split=split, data=data, reading=model.spec.reading, modes=modes,
                            batch_size=batch_size, device=dev, progress=progress)
    if out is not None and _dist()[0] == 0:
        result.save(Path(out), {"checkpoint": ckpt["path"], "store": str(store.path)})
    return result
