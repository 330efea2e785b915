"""Short binary codes for retrieval: the proposal at the end of §6.1.

"Computing similarity by using Euclidean distance between two 4096-dimensional,
real-valued vectors is inefficient, but it could be made efficient by training
an auto-encoder to compress these vectors to short binary codes."

:class:`BinaryAutoencoder` maps standardised vectors through one hidden layer
to ``bits`` logistic units and back.  During training the code units are
binarised with a straight-through estimator (forward: 0/1; backward: the
sigmoid's gradient) after Gaussian noise is added to their inputs, which
pushes them towards saturation (as in semantic hashing, ref. [14]).  Codes are
packed 8 bits a byte (``np.packbits``); retrieval ranks by Hamming distance,
computed with XOR and a popcount (``np.bitwise_count`` on NumPy 2, else a
256-entry lookup table), chunked like :func:`alexnet.probes.neighbours.knn`, ties
broken by the lower index.

The same auto-encoder on raw pixels is the baseline §6.1 contrasts it with.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from alexnet.errors import UserError

BITS_CHOICES = (64, 128, 256)
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint8 (same shape, uint8)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _POPCOUNT[x]


class BinaryAutoencoder(nn.Module):
    """in -> hidden (ReLU) -> bits (logistic, binarised) -> hidden (ReLU) -> in."""

    def __init__(self, dim: int, bits: int, hidden: int = 512, noise: float = 1.0) -> None:
        super().__init__()
        self.dim, self.bits, self.hidden, self.noise = dim, bits, hidden, noise
        self.encoder = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, bits))
        self.decoder = nn.Sequential(nn.Linear(bits, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def logits(self, x: Tensor) -> Tensor:
        return self.encoder((x - self.mean) / self.scale)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.logits(x)
        if self.training and self.noise > 0:
            z = z + self.noise * torch.randn_like(z)
        p = torch.sigmoid(z)
        # straight-through binarisation; the bit is z > 0, as encode() stores it (float32's sigmoid rounds
        # to exactly 0.5 for 0 < z < 6e-8, so p > 0.5 would disagree there)
        b = p + ((z > 0).to(p.dtype) - p).detach()
        return self.decoder(b), p

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        return self.logits(x) > 0


@dataclass
class CodeModel:
    """A trained auto-encoder and how it was trained."""

    net: BinaryAutoencoder
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bits(self) -> int:
        return self.net.bits

    def encode(self, vectors: np.ndarray, batch: int = 8192) -> np.ndarray:
        """Packed codes, uint8 (N, bits / 8)."""
        self.net.eval()
        out = np.empty((len(vectors), self.bits // 8), np.uint8)
        for lo in range(0, len(vectors), batch):
            x = torch.from_numpy(np.array(vectors[lo:lo + batch], np.float32))  # a writable copy
            out[lo:lo + len(x)] = np.packbits(self.net.encode(x).numpy(), axis=1)
        return out

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"kind": "alexnet-codes", "dim": self.net.dim, "bits": self.bits, "hidden": self.net.hidden,
                    "noise": self.net.noise, "state": self.net.state_dict(), "history": self.history,
                    **(extra or {})}, path)

    @classmethod
    def load(cls, path: Path) -> "CodeModel":
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(f"{path} is not a readable code model ({type(err).__name__})") from None
        if not isinstance(d, dict) or d.get("kind") != "alexnet-codes":
            raise UserError(f"{path} is not an alexnet code model")
        net = BinaryAutoencoder(d["dim"], d["bits"], d["hidden"], d["noise"])
        net.load_state_dict(d["state"])
        return cls(net, list(d.get("history", [])))


def train_codes(
    vectors: np.ndarray,
    bits: int,
    *,
    hidden: int = 512,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    noise: float = 1.0,
    seed: int = 0,
    max_rows: int | None = None,
) -> CodeModel:
    """Fit a :class:`BinaryAutoencoder` to (a random subset of ``max_rows`` of) ``vectors`` with Adam, MSE."""
    if bits % 8 or bits < 8:
        raise UserError(f"must be a positive multiple of 8, got {bits}", key="bits")
    n = len(vectors)
    if n < 2:
        raise UserError("codes: need at least two vectors to train an auto-encoder")
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, max_rows, replace=False)) if max_rows and max_rows < n else np.arange(n)
    x = torch.from_numpy(np.asarray(vectors[rows], np.float32))
    torch.manual_seed(seed)
    net = BinaryAutoencoder(x.shape[1], bits, hidden, noise)
    net.mean.copy_(x.mean(0))
    net.scale.copy_(x.std(0).clamp_min(1e-3 * float(x.std()) + 1e-12))
    target = (x - net.mean) / net.scale
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history: list[float] = []
    t0 = time.perf_counter()
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for lo in range(0, len(x), batch_size):
            idx = perm[lo:lo + batch_size]
            recon, _ = net(x[idx])
            loss = nn.functional.mse_loss(recon, target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(x))
    net.eval()
    return CodeModel(net, history, time.perf_counter() - t0)


def _words(codes: np.ndarray) -> np.ndarray:
    """Packed codes viewed as uint64 words when the byte count allows (8x fewer XORs and popcounts)."""
    codes = np.ascontiguousarray(codes)
    if codes.shape[1] % 8 == 0 and hasattr(np, "bitwise_count"):
        return codes.view(np.uint64)
    return codes


def hamming_knn(database: np.ndarray, queries: np.ndarray, k: int, *, chunk_rows: int = 65536,
                budget: int = 32 << 20) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` packed codes nearest in Hamming distance to each query; ties broken by the lower index.

    Returns (distances int, indices int64), each (len(queries), k).
    """
    database = np.asarray(database, np.uint8)
    queries = np.atleast_2d(np.asarray(queries, np.uint8))
    n = len(database)
    if queries.shape[1] != database.shape[1]:
        raise UserError(f"query codes have {8 * queries.shape[1]} bits but the database's have {8 * database.shape[1]}")
    if k < 1 or k > n:
        raise UserError(f"-k {k} must be between 1 and the number of codes ({n})")
    nq = len(queries)
    query_block = max(1, budget // (min(chunk_rows, n) * database.shape[1]))
    database, queries = _words(database), _words(queries)
    best_d = np.zeros((nq, 0), np.int32)
    best_i = np.zeros((nq, 0), np.int64)
    for lo in range(0, n, chunk_rows):
        chunk = database[lo:lo + chunk_rows]
        m = min(k, len(chunk))
        part_d = np.empty((nq, m), np.int32)
        part_i = np.empty((nq, m), np.int64)
        for qlo in range(0, nq, query_block):
            q = queries[qlo:qlo + query_block]
            d = popcount(q[:, None, 0] ^ chunk[None, :, 0]).astype(np.int32)
            for w in range(1, chunk.shape[1]):  # word by word: no (q, n, words) temporary
                d += popcount(q[:, None, w] ^ chunk[None, :, w])
            # top-m by (distance, index) through one integer key (bits * chunk_rows fits in int64)
            key = d.astype(np.int64) * len(chunk) + np.arange(len(chunk))
            sel = np.argpartition(key, m - 1, axis=1)[:, :m] if m < len(chunk) else np.broadcast_to(
                np.arange(len(chunk)), key.shape)
            part_d[qlo:qlo + len(q)] = np.take_along_axis(d, sel, 1)
            part_i[qlo:qlo + len(q)] = sel + lo
        d_all = np.concatenate([best_d, part_d], 1)
        i_all = np.concatenate([best_i, part_i], 1)
        order = np.lexsort((i_all, d_all), axis=1)[:, :k]
        best_d, best_i = np.take_along_axis(d_all, order, 1), np.take_along_axis(i_all, order, 1)
    return best_d, best_i


def hamming_brute_force(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference via unpacked bits (small sets only)."""
    a = np.unpackbits(np.atleast_2d(queries), axis=1).astype(np.int32)
    b = np.unpackbits(database, axis=1).astype(np.int32)
    d = (a[:, None, :] != b[None, :, :]).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(b)), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), order


# --------------------------------------------------------------------------- comparison


@dataclass
class MethodResult:
    method: str
    precision: float  # precision at k of same-class neighbours
    queries_per_s: float
    bytes_per_item: float
    train_seconds: float = 0.0
    notes: str = ""

    def row(self) -> str:
        train = f"{self.train_seconds:.0f} s" if self.train_seconds else "-"
        return (f"| {self.method} | {100 * self.precision:.1f}% | {self.queries_per_s:,.0f} | "
                f"{self.bytes_per_item:,.0f} | {train} | {self.notes} |")


def table(results: list[MethodResult], k: int) -> str:
    head = [f"| method | precision@{k} | queries/s | bytes/item | training | notes |", "|---|---|---|---|---|---|"]
    return "\n".join(head + [r.row() for r in results])


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@dataclass(frozen=True)
class CodeSettings:
    """How the binary codes are learnt and searched: code lengths, the auto-encoder's size and training,
    and the exact-search engine of the float baselines."""

    bits: tuple[int, ...] = (64, 128, 256)
    epochs: int = 10
    hidden: int = 512
    train_rows: int | None = None  # train the auto-encoder on a random subset of this many rows
    engine: str = "auto"
    seed: int = 0


def compare(
    db_vectors: dict[str, np.ndarray],
    q_vectors: dict[str, np.ndarray],
    db_labels: np.ndarray,
    q_labels: np.ndarray,
    *,
    k: int,
    code_on: tuple[str, ...] = ("features",),
    settings: CodeSettings = CodeSettings(),
    progress: Any = None,
) -> list[MethodResult]:
    """precision@k, queries/s and bytes/item of exact Euclidean search on each kind of vector
    (e.g. ``features``, ``pixels``) and of Hamming search on auto-encoder codes of ``code_on``."""
    from alexnet.probes.neighbours import knn

    say = progress or (lambda *_: None)
    results: list[MethodResult] = []
    nq = len(q_labels)
    for name, db in db_vectors.items():
        nb, secs = _timed(lambda: knn(db, q_vectors[name], k, engine=settings.engine))
        results.append(MethodResult(f"{name}, exact L2 ({db.shape[1]}-d float32, {nb.engine})",
                                    precision_at(db_labels, nb.indices, q_labels), nq / secs,
                                    db.shape[1] * 4))
        say(results[-1].row())
    for name in code_on:
        for b in settings.bits:
            model = train_codes(db_vectors[name], b, hidden=settings.hidden, epochs=settings.epochs,
                                seed=settings.seed, max_rows=settings.train_rows)
            db_codes = model.encode(db_vectors[name])
            q_codes, enc_s = _timed(lambda: model.encode(q_vectors[name]))
            (_, idx), secs = _timed(lambda: hamming_knn(db_codes, q_codes, k))
            results.append(MethodResult(f"{name}, {b}-bit codes, Hamming", precision_at(db_labels, idx, q_labels),
                                        nq / secs, b / 8, model.seconds,
                                        f"encoding {nq / enc_s:,.0f} queries/s; final MSE {model.history[-1]:.3f}"))
            say(results[-1].row())
    return results


def precision_at(db_labels: np.ndarray, indices: np.ndarray, q_labels: np.ndarray) -> float:
    from alexnet.probes.neighbours import precision_at_k

    return precision_at_k(np.asarray(db_labels)[indices], q_labels)


def save_results(results: list[MethodResult], out: Path, meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval.json").write_text(json.dumps({**meta, "results": [r.__dict__ for r in results]}, indent=2))
    (out / "retrieval.md").write_text(table(results, meta["k"]) + "\n")


def compare_feature_sets(
    database: str | Path,
    queries: str | Path,
    *,
    k: int,
    settings: CodeSettings = CodeSettings(),
    pixels: bool = True,
    pixel_codes: bool = False,
    max_queries: int | None = None,
    progress: Any = None,
) -> tuple[list[MethodResult], dict[str, Any]]:
    """Side by side on two feature folders (database, queries): raw fc7 features, binary codes of them,
    raw pixels (centre patch the network saw) and, optionally, binary codes of the raw pixels."""
    from alexnet.probes.features import FeatureSet, check_same_model, pixel_vectors

    db, qs = FeatureSet.open(database), FeatureSet.open(queries)
    check_same_model(db, qs)
    nq = len(qs) if max_queries is None else min(len(qs), max_queries)
    # a seeded random sample, not the first rows: stores are often ordered by class
    q_rows = np.sort(np.random.default_rng(settings.seed).choice(len(qs), nq, replace=False)) if nq < len(qs) \
        else np.arange(nq)
    db_labels, q_labels = np.asarray(db.labels), np.asarray(qs.labels)[q_rows]
    if (db_labels < 0).any() or (q_labels < 0).any():
        raise UserError("precision@k needs labels: the database or the queries include unlabelled images")
    vec_db = {"features": np.asarray(db.features)}
    vec_q = {"features": np.asarray(qs.features[q_rows])}
    if pixels or pixel_codes:
        crop = int(db.meta["model_spec"]["input_size"])
        vec_db["pixels"] = pixel_vectors(db.store().split(db.meta["split"]), db.index, crop)
        vec_q["pixels"] = pixel_vectors(qs.store().split(qs.meta["split"]), qs.index[q_rows], crop)
    code_on = ("features",) + (("pixels",) if pixel_codes else ())
    results = compare(vec_db, vec_q, db_labels, q_labels, k=k, code_on=code_on, settings=settings,
                      progress=progress)
    meta = {"database": str(db.path), "queries": str(qs.path), "database_items": len(db), "queries_used": nq,
            "k": k, "checkpoint": db.meta.get("checkpoint"), "checkpoint_sha256": db.fingerprint,
            "store": db.meta.get("store"), "epochs": settings.epochs, "hidden": settings.hidden,
            "seed": settings.seed}
    return results, meta
