"""Nearest neighbours by Euclidean distance between feature vectors (§6.1, Figure 4 right).

:func:`knn` is exact and bounded in memory: the database is visited in chunks
of ``chunk_rows`` rows (a memory-mapped million-row file is never loaded whole)
and a running top-k is kept per query.  Each chunk is scored either by a
float32 matrix product (``|q|² - 2 q·x + |x|²``, engine ``numpy``) or by FAISS's
``IndexFlatL2`` (engine ``faiss``, used by ``auto`` once the database has
``faiss_threshold`` rows or more and faiss-cpu is installed).  Both keep
``k + RERANK_MARGIN`` candidates (computed on vectors centred on the database
mean, which avoids float32 cancellation) and recompute their distances exactly
in float64 from the vectors themselves, so both engines return the ranking of
a brute-force float64 reference (ties broken by the lower index) unless the
true k-th neighbour is more than RERANK_MARGIN places away in float32 order.

The 2012 code's ``findsimilar.py`` ranked by squared Euclidean distance, as
here; the distances returned are squared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from alexnet.errors import UserError

#: Extra float32 candidates per query re-ranked exactly in float64.
RERANK_MARGIN = 16
#: Database size from which ``engine="auto"`` uses FAISS (when installed).
FAISS_THRESHOLD = 100_000
#: Bytes of distances held at once: (query block) x (database chunk) x 4.
DISTANCE_BUDGET = 64 << 20
ENGINES = ("auto", "numpy", "faiss")


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(engine: str, database_rows: int, threshold: int = FAISS_THRESHOLD) -> str:
    if engine not in ENGINES:
        raise UserError(f"engine: unknown value {engine!r}; allowed: {', '.join(ENGINES)}")
    if engine == "faiss" and not faiss_available():
        raise UserError("faiss: faiss-cpu is not installed (pip install faiss-cpu); use numpy", key="engine")
    if engine == "auto":
        return "faiss" if database_rows >= threshold and faiss_available() else "numpy"
    return engine


def _numpy_scorer(chunk: np.ndarray) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    x = np.ascontiguousarray(chunk, dtype=np.float32)
    xx = np.einsum("ij,ij->i", x, x)

    def score(q: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        d = q @ x.T
        d *= -2
        d += xx[None, :]
        d += np.einsum("ij,ij->i", q, q)[:, None]
        if m < d.shape[1]:
            idx = np.argpartition(d, m - 1, axis=1)[:, :m]
        else:
            idx = np.broadcast_to(np.arange(d.shape[1]), d.shape).copy()
        return np.take_along_axis(d, idx, 1), idx

    return score


def _faiss_scorer(chunk: np.ndarray) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    import faiss

    x = np.ascontiguousarray(chunk, dtype=np.float32)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)

    def score(q: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        d, i = index.search(q, min(m, len(x)))
        return d, i.astype(np.int64)

    return score


@dataclass
class Neighbours:
    """``indices[q, j]``: database row of query q's j-th nearest neighbour; ``distances``: squared L2."""

    indices: np.ndarray
    distances: np.ndarray
    engine: str


def knn(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    engine: str = "auto",
    faiss_threshold: int = FAISS_THRESHOLD,
    chunk_rows: int | None = None,
    exclude_self: np.ndarray | None = None,
) -> Neighbours:
    """The ``k`` database rows nearest (Euclidean) to each query row, exact.

    ``exclude_self``: for each query, a database row to leave out (e.g. the query itself), or -1.
    """
    n, d = database.shape
    given = np.atleast_2d(np.asarray(queries))  # the exact re-rank reads these, at their own precision
    queries = np.ascontiguousarray(given, dtype=np.float32)  # the candidate pass only
    if queries.shape[1] != d:
        raise UserError(f"queries are {queries.shape[1]}-d but the database is {d}-d")
    available = n - (1 if exclude_self is not None else 0)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise UserError(f"-k must be a positive integer, got {k!r}")
    if k > available:
        raise UserError(f"-k {k} is larger than the database ({available} images{' besides the query' if exclude_self is not None else ''})")
    engine = choose_engine(engine, n, faiss_threshold)
    make = _faiss_scorer if engine == "faiss" else _numpy_scorer
    nq = len(queries)
    keep = k + RERANK_MARGIN + (1 if exclude_self is not None else 0)
    if chunk_rows is None:
        chunk_rows = max(keep, min(n, (DISTANCE_BUDGET // 4) // max(1, min(nq, 1024)), (256 << 20) // (4 * d)))
    qblock = max(1, DISTANCE_BUDGET // (4 * chunk_rows))
    # Distances do not change under a common shift; centring on the database mean keeps
    # |q|^2 - 2 q.x + |x|^2 from cancelling catastrophically in float32 when the vectors
    # share a large common part (fc7 activities all start from bias 1).
    centre = np.zeros(d, np.float64)
    for lo in range(0, n, chunk_rows):
        centre += np.asarray(database[lo:lo + chunk_rows], np.float64).sum(0)
    centre = (centre / max(n, 1)).astype(np.float32)
    shifted_q = queries - centre
    best_d = np.full((nq, 0), np.inf, np.float32)
    best_i = np.zeros((nq, 0), np.int64)
    for lo in range(0, n, chunk_rows):
        chunk = np.asarray(database[lo:lo + chunk_rows], np.float32) - centre
        score = make(chunk)
        m = min(keep, len(chunk))
        part_d = np.empty((nq, m), np.float32)
        part_i = np.empty((nq, m), np.int64)
        for qlo in range(0, nq, qblock):
            dd, ii = score(shifted_q[qlo:qlo + qblock], m)
            part_d[qlo:qlo + qblock], part_i[qlo:qlo + qblock] = dd, ii + lo
        all_d = np.concatenate([best_d, part_d], 1)
        all_i = np.concatenate([best_i, part_i], 1)
        if all_d.shape[1] > keep:
            sel = np.argpartition(all_d, keep - 1, axis=1)[:, :keep]
            all_d, all_i = np.take_along_axis(all_d, sel, 1), np.take_along_axis(all_i, sel, 1)
        best_d, best_i = all_d, all_i
    if exclude_self is not None:
        mask = best_i == np.asarray(exclude_self, np.int64)[:, None]
        best_i = np.where(mask, -1, best_i)
    dist, idx = _exact_rerank(database, given, best_i, k)
    return Neighbours(idx, dist, engine)


def _exact_rerank(database: np.ndarray, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    dist, idx = np.empty((len(cand), k)), np.empty((len(cand), k), np.int64)
    step = max(1, (32 << 20) // max(1, cand.shape[1] * database.shape[1] * 8))
    for lo in range(0, len(cand), step):
        c, v = safe[lo:lo + step], valid[lo:lo + step]
        flat = c.reshape(-1)
        uniq, inverse = np.unique(flat, return_inverse=True)
        vecs = np.asarray(database[uniq], dtype=np.float64)
        diff = vecs[inverse.reshape(-1)].reshape(c.shape + (database.shape[1],)) - \
            queries[lo:lo + step].astype(np.float64)[:, None, :]
        dd = np.einsum("qkd,qkd->qk", diff, diff)
        dd[~v] = np.inf
        order = np.lexsort((c, dd), axis=1)[:, :k]
        dist[lo:lo + step] = np.take_along_axis(dd, order, 1)
        idx[lo:lo + step] = np.take_along_axis(c, order, 1)
    return dist, idx


def brute_force(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every squared distance in float64, sorted by (distance, index). Small sets only."""
    db = np.asarray(database, np.float64)
    q = np.atleast_2d(np.asarray(queries, np.float64))
    d = ((q[:, None, :] - db[None, :, :]) ** 2).sum(-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(db)), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), order


def precision_at_k(neighbour_labels: np.ndarray, query_labels: np.ndarray) -> float:
    """Mean fraction of each query's k neighbours that share its class."""
    return float((neighbour_labels == np.asarray(query_labels)[:, None]).mean())


# --------------------------------------------------------------------------- queries


@dataclass
class QueryIndices:
    rows: np.ndarray  # database rows used as queries
    skipped: list[str]  # one sentence per query that could not be used


_INDEX = re.compile(r"-?[0-9]+")
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_query_indices(text: str, database_rows: int) -> QueryIndices:
    """'0,5,10-12' or a text file with one index (or range) a line -> database rows.

    A token that is not an integer or range is an error; an index outside the
    database is skipped and reported; no usable query at all is an error.
    """
    source = text
    p = Path(text)
    if p.is_file():
        tokens = [t for line in p.read_text("utf-8").splitlines() for t in line.split(",")]
        source = str(p)
    else:
        tokens = text.split(",")
    rows: list[int] = []
    skipped: list[str] = []
    for raw in tokens:
        tok = raw.strip()
        if not tok or tok.startswith("#"):
            continue
        m = _RANGE.match(tok)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise UserError(f"range {tok!r} runs backwards", key="queries")
            values = range(a, b + 1)
        elif _INDEX.fullmatch(tok):  # str.isdigit also admits "²" and "--3", which int() refuses
            values = range(int(tok), int(tok) + 1)
        else:
            raise UserError(f"cannot decode {tok!r} in {source!r}: expected a feature folder, "
                            f"image indices like 0,5,10-12, or a file of indices", key="queries")
        for v in values:
            if 0 <= v < database_rows:
                rows.append(v)
            else:
                skipped.append(f"query {v}: no such image (the database has images 0..{database_rows - 1})")
    if not rows:
        raise UserError(f"{text!r}: no usable query" + (f" ({skipped[0]})" if skipped else ""), key="queries")
    return QueryIndices(np.asarray(rows, np.int64), skipped)


# --------------------------------------------------------------------------- feature folders


@dataclass
class SearchResult:
    database: object  # FeatureSet
    queries: object  # FeatureSet (queries from another set) or the database (queries by index)
    query_rows: np.ndarray  # rows of ``queries``
    neighbours: Neighbours
    skipped: list[str]
    seconds: float

    def to_dict(self) -> dict:
        db, qs = self.database, self.queries
        db_paths, q_paths = db.paths(), qs.paths()
        items = []
        for j, row in enumerate(self.query_rows):
            nb = self.neighbours.indices[j]
            items.append({
                "query": int(row), "query_label": int(qs.labels[row]), "query_path": q_paths[row],
                "neighbours": nb.tolist(), "labels": db.labels[nb].tolist(),
                "paths": [db_paths[i] for i in nb], "squared_distances": self.neighbours.distances[j].tolist(),
            })
        return {"database": str(db.path), "queries_from": str(qs.path), "k": int(self.neighbours.indices.shape[1]),
                "engine": self.neighbours.engine, "checkpoint_sha256": db.fingerprint, "skipped": self.skipped,
                "seconds": self.seconds, "results": items}


def search_features(
    database: str | Path,
    queries: str | Path,
    k: int,
    *,
    engine: str = "auto",
    faiss_threshold: int = FAISS_THRESHOLD,
    exclude_self: bool = False,
    max_queries: int | None = None,
) -> SearchResult:
    """Neighbours in the feature folder ``database`` of the queries: another feature folder
    (all its rows, or the first ``max_queries``) or indices of database images ('0,5,10-12' or a file)."""
    import time

    from alexnet.probes.features import FeatureSet, check_same_model

    db = FeatureSet.open(database)
    qpath = Path(queries)
    skipped: list[str] = []
    if qpath.is_dir():
        qs = FeatureSet.open(qpath)
        check_same_model(db, qs)
        rows = np.arange(len(qs) if max_queries is None else min(len(qs), max_queries))
        if exclude_self:
            raise UserError("applies to queries given as database indices only", key="exclude_self")
        self_rows = None
    else:
        parsed = parse_query_indices(str(queries), len(db))
        qs, rows, skipped = db, parsed.rows, parsed.skipped
        if max_queries is not None:
            rows = rows[:max_queries]
        self_rows = rows if exclude_self else None
    t0 = time.perf_counter()
    q = np.asarray(qs.features[rows], np.float32)
    nb = knn(db.features, q, k, engine=engine, faiss_threshold=faiss_threshold, exclude_self=self_rows)
    return SearchResult(db, qs, rows, nb, skipped, time.perf_counter() - t0)


def render_grid(result: SearchResult, to: str | Path | None = None, rows: int | None = None,
                columns: int | None = None) -> bytes:
    """Figure 4 (right) for the first ``rows`` queries: query, then its ``columns`` nearest images."""
    from alexnet.paper import RETRIEVAL
    from alexnet.probes.plots import neighbour_grid

    rows = min(rows or RETRIEVAL.figure4_queries, len(result.query_rows))
    cols = min(columns or RETRIEVAL.figure4_neighbours, result.neighbours.indices.shape[1])
    db, qs = result.database, result.queries
    q_rows = result.query_rows[:rows]
    nb = result.neighbours.indices[:rows, :cols]
    try:
        q_img = qs.images(q_rows)
        n_img = db.images(nb.reshape(-1)).reshape(nb.shape + q_img.shape[1:])
        classes = [name for _, name in db.store().classes]
    except (UserError, OSError) as err:
        raise UserError(f"cannot draw the neighbour grid: the images are not readable ({err})") from None

    def name(label: int) -> str:
        return classes[label] if 0 <= label < len(classes) else "?"

    q_titles = [f"query: {name(int(qs.labels[r]))}" for r in q_rows]
    n_titles = [[f"{name(int(db.labels[i]))} ({d:.3g})" for i, d in zip(nb[j], result.neighbours.distances[j])]
                for j in range(rows)]
    return neighbour_grid(q_img, n_img, query_titles=q_titles, neighbour_titles=n_titles, to=to)
