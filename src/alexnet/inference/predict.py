"""Top-5 predictions for image files (§6.1, Figure 4 left).

Each image is decoded the way ``alexnet prepare`` decoded the training images
(:func:`alexnet.data.images.load_image`: shorter side rescaled to the store's
size S, central S x S patch), then cut into the centre patch or the ten patches
of §4.1, the training set's mean is subtracted exactly as at evaluation time, and
the softmax outputs (averaged over the ten patches) are ranked.  S is the size of
the training store's mean image -- for the paper's 224 input,
round(224 * 256 / 224) = 256 (§2) -- so the subtracted mean lines up pixel for
pixel.  The run is opened with :class:`alexnet.inference.trained.TrainedRun`,
which finds the training mean (the checkpoint, else the recorded training store,
else ``training_store``).

The correct label is taken from ``--labels`` (lines ``IMAGE LABEL``, where LABEL
is a wnid, a class name or a class index) or, failing that, from the image's
parent folder when its name is a wnid of the checkpoint's class table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from alexnet.errors import UserError
from alexnet.inference.trained import PATCHES, TrainedRun
from alexnet.paper import RETRIEVAL

PATCH_MODES = PATCHES


@dataclass
class Prediction:
    image: str
    top: list[dict[str, Any]]  # rank, class, wnid, name, probability
    label: int | None = None  # the correct class, when known
    label_probability: float | None = None
    label_rank: int | None = None  # 1-based rank of the correct class among all classes
    patch: np.ndarray | None = field(default=None, repr=False)  # the decoded S x S image, for figures

    def to_dict(self, classes: list[tuple[str, str]]) -> dict[str, Any]:
        d: dict[str, Any] = {"image": self.image, "top": self.top}
        if self.label is not None:
            wnid, name = classes[self.label]
            d["label"] = {"class": self.label, "wnid": wnid, "name": name,
                          "probability": self.label_probability, "rank": self.label_rank,
                          "in_top": self.label_rank is not None and self.label_rank <= len(self.top)}
        return d


def read_labels_file(path: str | Path) -> dict[str, str]:
    """``IMAGE LABEL`` per line (tab or whitespace separated) -> {image: label}; # starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist", key="labels")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.rsplit(None, 1)
        if len(parts) != 2:
            raise UserError(f"{path}:{n}: expected 'IMAGE LABEL', got {line!r}")
        out[parts[0].strip()] = parts[1].strip()
    return out


def resolve_label(text: str, classes: list[tuple[str, str]], source: str) -> int:
    """A wnid, a class name (case-insensitive) or an index -> the class index."""
    for i, (wnid, name) in enumerate(classes):
        if text == wnid:
            return i
    lowered = text.lower()
    for i, (_, name) in enumerate(classes):
        if lowered == name.lower() or lowered in (n.strip().lower() for n in name.split(",")):
            return i
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    raise UserError(f"{source}: label {text!r} is not a class of the checkpoint (wnid, name or index)")


class Predictor:
    """A trained run ready to rank the classes of single images."""

    def __init__(self, source: str | Path, *, training_store: str | Path | None = None, device: str = "auto") -> None:
        self.run = TrainedRun.open(source, device=device, training_store=training_store)
        self.classes = self.run.classes
        self.size = self.run.image_size  # images are decoded to the training images' size (§2)
        if self.size < self.run.spec.input_size:
            raise UserError(f"the mean image is {self.size}x{self.size}, smaller than the network's input "
                            f"{self.run.spec.input_size}")
        self.k = min(RETRIEVAL.top_k, self.run.spec.num_classes)

    def probabilities(self, images: np.ndarray, patches: str = "centre") -> np.ndarray:
        """uint8 (B, S, S, 3) -> (B, C) softmax (averaged over the ten patches for ``ten``)."""
        return self.run.probabilities(images, patches)

    def rank(self, p: np.ndarray, image: str, label: int | None, patch: np.ndarray | None) -> Prediction:
        order = np.argsort(-p, kind="stable")
        top = [{"rank": r + 1, "class": int(c), "wnid": self.classes[c][0], "name": self.classes[c][1],
                "probability": float(p[c])} for r, c in enumerate(order[: self.k])]
        pred = Prediction(image, top, patch=patch)
        if label is not None:
            pred.label = label
            pred.label_probability = float(p[label])
            pred.label_rank = int(np.flatnonzero(order == label)[0]) + 1
        return pred

    def label_for(self, path: Path, given: dict[str, str]) -> int | None:
        for key in (str(path), path.name):
            if key in given:
                return resolve_label(given[key], self.classes, f"labels file entry for {key}")
        wnids = {w: i for i, (w, _) in enumerate(self.classes)}
        return wnids.get(path.parent.name)


def predict_images(
    predictor: Predictor,
    images: Sequence[str | Path],
    *,
    patches: str = "centre",
    labels: dict[str, str] | None = None,
    on_error=None,
) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predictions for the images that decode; (image, reason) for those that do not."""
    from alexnet.data.images import ImageRejected, load_image

    done: list[Prediction] = []
    failed: list[tuple[str, str]] = []
    for item in images:
        path = Path(item)
        try:
            if path.is_dir():
                raise ImageRejected("is a directory, not an image file")
            patch, _ = load_image(path, predictor.size)
        except ImageRejected as err:
            failed.append((str(item), str(err)))
            if on_error is not None:
                on_error(str(item), str(err))
            continue
        label = predictor.label_for(path, labels or {})
        p = predictor.probabilities(patch[None], patches)[0]
        done.append(predictor.rank(p, str(item), label, patch))
    return done, failed


def format_text(predictions: Sequence[Prediction], classes: list[tuple[str, str]]) -> str:
    lines = []
    for pred in predictions:
        head = pred.image
        if pred.label is not None:
            wnid, name = classes[pred.label]
            head += (f"  (correct: {wnid} {name}, p = {pred.label_probability:.4f}, rank {pred.label_rank})")
        lines.append(head)
        for t in pred.top:
            mark = "  <- correct" if pred.label is not None and t["class"] == pred.label else ""
            lines.append(f"  {t['rank']}. {t['probability']:.4f}  {t['wnid']}  {t['name']}{mark}")
    return "\n".join(lines)


def render_figure(predictions: Sequence[Prediction], classes: list[tuple[str, str]], path: str | Path) -> None:
    """Figure 4 (left): each image, the correct label under it, its top-5 labels as bars (the correct one red)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = len(predictions)
    if n == 0:
        raise UserError("no image could be decoded, so there is nothing to draw")
    cols = min(n, RETRIEVAL.figure4_left_images // 2)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows * 2, cols, figsize=(2.6 * cols, 4.4 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1.4, 1] * rows})
    for ax in axes.flat:
        ax.axis("off")
    for i, pred in enumerate(predictions):
        r, c = divmod(i, cols)
        ax_img, ax_bar = axes[2 * r, c], axes[2 * r + 1, c]
        if pred.patch is not None:
            ax_img.imshow(pred.patch)
        title = classes[pred.label][1] if pred.label is not None else Path(pred.image).name
        ax_img.text(0.5, -0.03, title, transform=ax_img.transAxes, ha="center", va="top", fontsize=9,
                    fontweight="bold" if pred.label is not None else "normal")  # under the image, as Figure 4
        names = [t["name"][:22] for t in pred.top][::-1]
        values = [t["probability"] for t in pred.top][::-1]
        colours = ["#d62728" if pred.label is not None and t["class"] == pred.label else "#9ecae1"
                   for t in pred.top][::-1]
        ax_bar.axis("on")
        ax_bar.barh(range(len(values)), values, color=colours)
        ax_bar.set_xlim(0, 1)
        ax_bar.set_yticks(range(len(names)))
        ax_bar.set_yticklabels(names, fontsize=7)
        ax_bar.tick_params(axis="x", labelsize=6)
        for side in ("top", "right"):
            ax_bar.spines[side].set_visible(False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=120)
    except OSError as err:
        raise UserError(f"{out}: cannot write ({err.strerror or err})", key="figure") from None
    finally:
        plt.close(fig)


def predict(
    source: str | Path,
    images: Sequence[str | Path],
    *,
    patches: str = "centre",
    labels_file: str | Path | None = None,
    training_store: str | Path | None = None,
    device: str = "auto",
    as_json: bool = False,
    figure: str | Path | None = None,
    max_pixels: int | None = None,
) -> int:
    """The ``alexnet predict`` command: prints, draws, returns 0, or 1 if any image failed to decode.

    ``max_pixels``: larger images are refused as decompression bombs (0: no limit; default PIL's).
    """
    if not images:
        raise UserError("give at least one image file")
    if patches not in PATCH_MODES:
        raise UserError(f"unknown value {patches!r}; allowed: {', '.join(PATCH_MODES)}", key="patches")
    predictor = Predictor(source, training_store=training_store, device=device)
    given = read_labels_file(labels_file) if labels_file is not None else {}

    def report(image: str, reason: str) -> None:
        print(f"alexnet predict: skipped {image}: {reason}", file=sys.stderr)

    from alexnet.data.images import DEFAULT_MAX_PIXELS, pixel_limit

    with pixel_limit(DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels):
        preds, failed = predict_images(predictor, images, patches=patches, labels=given, on_error=report)
    if as_json:
        print(json.dumps({"checkpoint": str(predictor.run.path), "patches": patches,
                          "mean": predictor.run.mean_source,
                          "predictions": [p.to_dict(predictor.classes) for p in preds],
                          "failed": [{"image": i, "reason": r} for i, r in failed]}, indent=2))
    elif preds:
        print(format_text(preds, predictor.classes))
    if figure is not None and preds:
        render_figure(preds, predictor.classes, figure)
        if not as_json:
            print(f"figure saved to {figure}")
    if failed:
        print(f"alexnet predict: {len(failed)} of {len(images)} images could not be decoded", file=sys.stderr)
        return 1
    return 0
