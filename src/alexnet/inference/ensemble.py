"""Ensembles (§6): "averaging the predictions of five similar CNNs".

Each member is one of

* an eval output folder (``eval.json``, ``probs_ten.npy`` / ``probs_centre.npy``, ``labels.npy``),
  as written by ``alexnet eval``;
* a ``.npy`` file of (N, C) probabilities, with ``labels.npy`` beside it (or ``--labels``);
* a run directory or checkpoint file, evaluated first with
  :func:`alexnet.inference.evaluate.evaluate_checkpoint` on ``--data`` (saved to ``OUT/members/<k>``).

The ensemble's prediction for an image is the arithmetic mean of the members'
probability vectors (each member's own prediction being, by default, its
ten-patch softmax average of §4.1).  Every member must cover the same images in
the same order: the same image count, class count, labels and (where recorded)
class table, and -- where ``eval.json`` records them -- the same store (its path and the
digest of its manifest), split and image list; a member that disagrees is named in a
:class:`UserError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from alexnet.errors import UserError
from alexnet.inference.evaluate import error_table
from alexnet.inference.scoring import topk_error_rates

#: Rows of a probability file may sum to 1 within this tolerance (float32 softmax sums).
SUM_TOLERANCE = 1e-3


@dataclass
class Member:
    name: str  # as given on the command line
    source: str  # the file the probabilities were read from
    probs: np.ndarray  # (N, C) float32
    labels: np.ndarray | None  # (N,) int64
    classes: list[tuple[str, str]] | None
    split: str | None
    origin: dict[str, Any] = field(default_factory=dict)  # store, store_manifest_sha256, images_sha256 (eval.json)


def _read_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read {what} ({str(err).splitlines()[0]})") from None


def _eval_json(folder: Path) -> dict[str, Any]:
    path = folder / "eval.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is not readable JSON") from None


def _load_probs(path: Path, name: str) -> Member:
    folder = path.parent
    probs = _read_npy(path, "probabilities")
    labels_path = folder / "labels.npy"
    labels = _read_npy(labels_path, "labels").astype(np.int64) if labels_path.is_file() else None
    meta = _eval_json(folder)
    classes = [tuple(c) for c in meta["classes"]] if meta.get("classes") else None
    return Member(name, str(path), probs, labels, classes, meta.get("split"), _origin(meta))


def _origin(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta[k] for k in ("store", "store_manifest_sha256", "images_sha256") if meta.get(k)}


def _other_images(m: Member, first: Member) -> str | None:
    """How ``m`` was evaluated on other images than ``first`` (as far as both record it), else None."""
    a, b = m.origin, first.origin
    if a.get("images_sha256") and b.get("images_sha256") and a["images_sha256"] != b["images_sha256"]:
        return "their image lists differ"
    if m.split and first.split and m.split != first.split:
        return f"splits {m.split!r} and {first.split!r}"
    if a.get("store_manifest_sha256") and b.get("store_manifest_sha256"):
        if a["store_manifest_sha256"] != b["store_manifest_sha256"]:
            return f"stores {a.get('store')} and {b.get('store')}, whose manifests differ"
    elif a.get("store") and b.get("store") and Path(a["store"]).resolve() != Path(b["store"]).resolve():
        return f"stores {a['store']} and {b['store']}"
    return None


def _is_checkpoint(path: Path) -> bool:
    return (path.is_dir() and (path / "checkpoints" / "last.pt").is_file()) or (
        path.is_file() and path.suffix in (".pt", ".pth"))


def load_member(
    item: str | Path,
    *,
    patches: str = "ten",
    data: str | Path | None = None,
    split: str | None = None,
    work: Path | None = None,
    index: int = 0,
    progress: bool = False,
    batch_size: int = 64,
    device: str = "auto",
) -> Member:
    """Read (or compute) one member's probabilities; a UserError naming ``item`` if it is none of the kinds."""
    path = Path(item)
    name = str(item)
    if not path.exists():
        raise UserError(f"ensemble member {path} does not exist")
    if path.is_file() and path.suffix == ".npy":
        return _load_probs(path, name)
    if path.is_dir() and (path / f"probs_{patches}.npy").is_file():
        return _load_probs(path / f"probs_{patches}.npy", name)
    if _is_checkpoint(path):
        if data is None:
            raise UserError(f"ensemble member {path} is a trained run: name the store to evaluate it on", key="data")
        from alexnet.inference.evaluate import evaluate_checkpoint

        out = None if work is None else work / "members" / f"{index + 1}"
        result = evaluate_checkpoint(path, data, split=split, out=out, modes=(patches,), batch_size=batch_size,
                                     device=device, progress=progress)
        origin = _origin(_eval_json(out)) if out is not None else {}
        return Member(name, str(out or path), result.probs[patches], result.labels, list(result.classes),
                      result.split, origin)
    if path.is_dir() and any(path.glob("probs_*.npy")):
        have = ", ".join(sorted(p.name for p in path.glob("probs_*.npy")))
        raise UserError(f"ensemble member {path} has no probs_{patches}.npy (it has {have}); "
                        f"choose the patches accordingly", key="patches")
    raise UserError(f"ensemble member {path} is neither a probability file (.npy), an eval folder, "
                    f"a run directory nor a checkpoint")


def check_members(members: Sequence[Member], labels: np.ndarray | None = None) -> np.ndarray:
    """Validate that the members agree; return the labels. Raises a UserError naming the first odd member."""
    if len(members) < 1:
        raise UserError("ensemble: give at least one member")
    for m in members:
        p = m.probs
        if p.ndim != 2 or p.shape[1] < 2 or not np.issubdtype(p.dtype, np.floating):
            raise UserError(f"{m.source}: expected an (images, classes) array of probabilities, "
                            f"got {p.dtype} {tuple(p.shape)}")
        if not np.isfinite(p).all() or (p < 0).any() or np.abs(p.sum(1) - 1).max(initial=0) > SUM_TOLERANCE:
            raise UserError(f"{m.source}: rows are not probability vectors (negative, non-finite, or not "
                            f"summing to 1); save softmax outputs, not logits")
    first = members[0]
    for m in members[1:]:
        if m.probs.shape[0] != first.probs.shape[0]:
            raise UserError(f"{m.source} has {m.probs.shape[0]} images but {first.source} has "
                            f"{first.probs.shape[0]}: the members must cover the same images")
        if m.probs.shape[1] != first.probs.shape[1]:
            raise UserError(f"{m.source} has {m.probs.shape[1]} classes but {first.source} has "
                            f"{first.probs.shape[1]}")
        other = _other_images(m, first)
        if other:
            raise UserError(f"{m.source} and {first.source} were evaluated on different images ({other}): the "
                            f"members must be evaluated on the same images of the same store")
        if m.classes and first.classes and m.classes != first.classes:
            diff = next(i for i, (a, b) in enumerate(zip(m.classes, first.classes)) if a != b)
            raise UserError(f"{m.source} has another class table than {first.source} "
                            f"(class {diff}: {m.classes[diff][0]} vs {first.classes[diff][0]})")
    if labels is None:
        with_labels = [m for m in members if m.labels is not None]
        if not with_labels:
            raise UserError("no ensemble member has labels.npy beside it; name a labels file", key="labels")
        labels = with_labels[0].labels
        ref = with_labels[0].source
    else:
        ref = "the labels file"
    assert labels is not None
    for m in members:
        if m.labels is None:
            if len(labels) != m.probs.shape[0]:
                raise UserError(f"{m.source} has {m.probs.shape[0]} images but the labels ({ref}) {len(labels)}")
            continue
        if m.labels.shape != labels.shape:
            raise UserError(f"{m.source} has {len(m.labels)} labels but {ref} has {len(labels)}")
        if not np.array_equal(m.labels, labels):
            i = int(np.flatnonzero(m.labels != labels)[0])
            raise UserError(f"{m.source} has other labels than {ref} (image {i}: {m.labels[i]} vs {labels[i]}): "
                            f"the members must list the same images in the same order")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= first.probs.shape[1]:
        raise UserError(f"labels ({ref}) hold class indices outside 0..{first.probs.shape[1] - 1}")
    return labels


@dataclass
class EnsembleResult:
    members: list[Member]
    labels: np.ndarray
    probs: np.ndarray  # the average

    def rows(self) -> list[tuple[str, float, float]]:
        rows = []
        for k, m in enumerate(self.members):
            rows.append((f"CNN {k + 1}: {m.name}", *topk_error_rates(m.probs, self.labels)))
        rows.append((f"{len(self.members)} CNNs, predictions averaged (§6)", *topk_error_rates(self.probs, self.labels)))
        return rows

    @property
    def split(self) -> str:
        return next((m.split for m in self.members if m.split), "eval")

    def table(self) -> str:
        return error_table(self.rows(), self.split, len(self.labels), self.probs.shape[1])

    def save(self, out: Path) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "probs_ensemble.npy", self.probs.astype(np.float32))
        np.save(out / "labels.npy", self.labels.astype(np.int64))
        rows = self.rows()
        summary = {
            "split": self.split, "images": int(len(self.labels)), "num_classes": int(self.probs.shape[1]),
            "members": [{"name": m.name, "source": m.source, "top1_error": e1, "top5_error": e5}
                        for m, (_, e1, e5) in zip(self.members, rows)],
            "ensemble": {"size": len(self.members), "top1_error": rows[-1][1], "top5_error": rows[-1][2]},
            "classes": [list(c) for c in (self.members[0].classes or [])],
        }
        (out / "ensemble.json").write_text(json.dumps(summary, indent=2))
        (out / "ensemble.md").write_text(self.table() + "\n")


def average(members: Sequence[Member]) -> np.ndarray:
    """The mean of the members' (N, C) probabilities, accumulated in float64."""
    total = np.zeros(members[0].probs.shape, np.float64)
    for m in members:
        total += m.probs
    return (total / len(members)).astype(np.float32)


def ensemble(
    items: Sequence[str | Path],
    *,
    patches: str = "ten",
    data: str | Path | None = None,
    split: str | None = None,
    labels: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    batch_size: int = 64,
    device: str = "auto",
) -> EnsembleResult:
    """Load (or compute) every member, check they agree, average them, and save to ``out``."""
    if patches not in ("centre", "ten"):
        raise UserError(f"unknown value {patches!r}; allowed: centre, ten", key="patches")
    work = Path(out) if out is not None else None
    members = [load_member(item, patches=patches, data=data, split=split, work=work, index=k, progress=progress,
                           batch_size=batch_size, device=device)
               for k, item in enumerate(items)]
    given = None
    if labels is not None:
        given = _read_npy(Path(labels), "labels").astype(np.int64).reshape(-1)
    y = check_members(members, given)
    result = EnsembleResult(members, y, average(members))
    if work is not None:
        result.save(work)
    return result
