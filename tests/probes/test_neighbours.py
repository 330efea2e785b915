"""Exact nearest neighbours in feature space (§6.1, Figure 4 right)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.probes import neighbours as nbmod
from alexnet.probes import plots
from alexnet.probes.features import KIND, extract_features
from alexnet.probes.neighbours import (RERANK_MARGIN, Neighbours, SearchResult, _faiss_scorer, _numpy_scorer,
                                       brute_force, choose_engine, faiss_available, knn, parse_query_indices,
                                       render_grid, search_features)
from helpers import tiny_run


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(1500, 48)).astype(np.float32), rng.normal(size=(37, 48)).astype(np.float32)


@pytest.mark.parametrize("chunk", [None, 100, 1499])
def test_exact_matches_brute_force(data, chunk) -> None:
    db, q = data
    ref_d, ref_i = brute_force(db, q, 9)
    got = knn(db, q, 9, engine="numpy", chunk_rows=chunk)
    np.testing.assert_array_equal(got.indices, ref_i)
    np.testing.assert_allclose(got.distances, ref_d, rtol=1e-12)


def test_float64_queries_are_re_ranked_at_their_own_precision() -> None:
    """The float32 pass only picks candidates; the exact re-rank must read the queries as given.

    The query 1 + 1.5e-8 lies nearer to 1 + 2e-8 (0.5e-8 away) than to 1 (1.5e-8 away), but in
    float32 it rounds to 1: a re-rank of the rounded query would answer row 0.
    """
    db = np.array([[1.0], [1.0 + 2e-8], [5.0]])
    q = np.array([[1.0 + 1.5e-8]])
    got = knn(db, q, 1, engine="numpy")
    assert got.indices[0, 0] == 1
    assert got.distances[0, 0] == pytest.approx(0.25e-16, rel=1e-6)


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_engine_matches_reference(data) -> None:
    db, q = data
    ref_d, ref_i = brute_force(db, q, 9)
    got = knn(db, q, 9, engine="faiss", chunk_rows=400)
    assert got.engine == "faiss"
    np.testing.assert_array_equal(got.indices, ref_i)
    assert knn(db, q, 3, engine="auto", faiss_threshold=1000).engine == "faiss"
    assert knn(db, q, 3, engine="auto", faiss_threshold=10**9).engine == "numpy"


def test_image_is_its_own_nearest_neighbour(data) -> None:
    db, _ = data
    rows = np.array([0, 7, 1499])
    got = knn(db, db[rows], 4)
    assert (got.indices[:, 0] == rows).all() and (got.distances[:, 0] == 0).all()
    without = knn(db, db[rows], 3, exclude_self=rows)
    assert not (without.indices == rows[:, None]).any()
    np.testing.assert_array_equal(without.indices, got.indices[:, 1:])


def test_ties_break_by_lower_index() -> None:
    db = np.zeros((10, 3), np.float32)
    got = knn(db, np.zeros((1, 3), np.float32), 4, chunk_rows=3)
    assert got.indices.tolist() == [[0, 1, 2, 3]]


def test_bad_k_and_queries(data) -> None:
    db, q = data
    with pytest.raises(UserError, match="larger than the database"):
        knn(db, q, len(db) + 1)
    with pytest.raises(UserError, match="-d"):
        knn(db, q[:, :5], 3)
    with pytest.raises(UserError, match="cannot decode 'x'"):
        parse_query_indices("1,x", 10)
    got = parse_query_indices("1, 3-4, 99", 10)
    assert got.rows.tolist() == [1, 3, 4] and "99" in got.skipped[0]
    with pytest.raises(UserError, match="no usable query"):
        parse_query_indices("50", 10)


@pytest.fixture(scope="module")
def feature_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    run, store = tiny_run(root)
    train = extract_features(run, store, root / "train", split="train")
    val = extract_features(run, store, root / "val", split="val")
    other_run, _ = tiny_run(root, seed=1)
    other = extract_features(other_run, store, root / "other", split="val")
    return train, val, other


def test_search_feature_folders_and_grid(feature_sets, tmp_path: Path, capsys) -> None:
    train, val, other = feature_sets
    res = search_features(train.path, val.path, 6)
    ref_d, ref_i = brute_force(np.asarray(train.features), np.asarray(val.features), 6)
    np.testing.assert_array_equal(res.neighbours.indices, ref_i)
    with pytest.raises(UserError, match="different checkpoints"):
        search_features(train.path, other.path, 3)
    grid = tmp_path / "grid.png"
    assert main(["neighbours", str(train.path), "--queries", str(val.path), "-k", "6", "--grid", str(grid),
                 "--out", str(tmp_path / "nb.json")]) == 0
    out = capsys.readouterr().out
    assert "precision@6" in out
    with Image.open(grid) as im:
        im.verify()
    d = json.loads((tmp_path / "nb.json").read_text())
    assert len(d["results"]) == 40 and len(d["results"][0]["neighbours"]) == 6


def test_cli_index_queries_and_errors(feature_sets, tmp_path: Path, capsys) -> None:
    train, _, other = feature_sets
    out = tmp_path / "nb.json"
    assert main(["neighbours", str(train.path), "--queries", "0,5,500", "-k", "3", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped query 500" in err
    d = json.loads(out.read_text())
    assert [r["neighbours"][0] for r in d["results"]] == [0, 5]  # each image is its own nearest neighbour
    assert main(["neighbours", str(train.path), "--queries", "0", "-k", "1000"]) == 2
    assert "larger than the database" in capsys.readouterr().err
    assert main(["neighbours", str(train.path), "--queries", "zebra"]) == 2
    assert "cannot decode" in capsys.readouterr().err
    assert main(["neighbours", str(train.path), "--queries", str(other.path)]) == 2
    assert "different checkpoints" in capsys.readouterr().err


# --------------------------------------------------------------------------- small helpers

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")


def raises_exactly(message: str, key: str | None, call: Callable[[], object]) -> UserError:
    """``call()`` raises a UserError whose whole text is ``message`` (prefixed by ``key: `` when keyed)."""
    text = f"{key}: {message}" if key else message
    with pytest.raises(UserError, match=f"^{re.escape(text)}$") as info:
        call()
    assert info.value.key == key and info.value.message == message
    return info.value


def line_points(*xs: float) -> np.ndarray:
    """Points on a line as (n, 1) float32 rows: squared distances are (x - y)**2, easy by hand."""
    return np.asarray(xs, np.float32)[:, None]


def scored(score: Callable, query: np.ndarray, m: int) -> dict[int, float]:
    """A scorer's candidates for one query as {chunk row: squared distance} (their order is unspecified)."""
    d, i = score(np.asarray(query, np.float32), m)
    assert d.shape == i.shape and len(d) == len(query)
    return {int(r): float(v) for r, v in zip(i[0], d[0])}


def feature_folder(path: Path, features: np.ndarray, labels: list[int], sha: str = "w1") -> Path:
    """A finished feature folder written by hand (sidecar, progress, arrays, paths), as FeatureSet.open reads it."""
    path.mkdir(parents=True)
    n, dim = features.shape
    (path / "features.json").write_text(json.dumps({"kind": KIND, "count": n, "dim": dim, "checkpoint": "run",
                                                    "checkpoint_sha256": sha, "store": "", "split": "val"}))
    (path / "progress.json").write_text(json.dumps({"rows_done": n}))
    np.save(path / "features.npy", np.asarray(features, np.float32))
    np.save(path / "index.npy", np.arange(n))
    np.save(path / "labels.npy", np.asarray(labels, np.int64))
    (path / "paths.txt").write_text("".join(f"img{i}.jpg\n" for i in range(n)))
    return path


class FakeSet:
    """The part of a FeatureSet that SearchResult reads: path, labels, paths(), fingerprint, images(), store().

    Image of row r is a 2x2 patch filled with ``base + r``, so a grid's cells say which row they show."""

    def __init__(self, path: str, labels: list[int], base: int = 0, fail: OSError | None = None) -> None:
        self.path, self.labels, self.base, self.fail = Path(path), np.asarray(labels, np.int64), base, fail
        self.fingerprint = "abc123"

    def paths(self) -> list[str]:
        return [f"{self.path.name}/{i}.jpg" for i in range(len(self.labels))]

    def images(self, rows: np.ndarray) -> np.ndarray:
        if self.fail:
            raise self.fail
        return np.stack([np.full((2, 2, 3), self.base + int(r), np.uint8) for r in np.asarray(rows).reshape(-1)])

    def store(self) -> SimpleNamespace:
        return SimpleNamespace(classes=[("n0", "cat"), ("n1", "dog")])


# --------------------------------------------------------------------------- scorers, re-rank, knn


def test_numpy_scorer_returns_the_m_nearest_with_squared_distances() -> None:
    """The float32 matrix-product scorer: the m nearest chunk rows and their squared distances, in float32,
    for m = 1, m just below the chunk size, and m covering the whole chunk."""
    chunk = np.array([[0, 0], [3, 4], [1, 0], [0, 2], [5, 5]], np.float64)  # from (1, 0): 1, 20, 0, 5, 41
    score = _numpy_scorer(chunk)
    q = [[1.0, 0.0]]
    assert scored(score, q, 1) == {2: 0.0}
    assert scored(score, q, 2) == {2: 0.0, 0: 1.0}
    assert scored(score, q, 4) == {2: 0.0, 0: 1.0, 3: 5.0, 1: 20.0}
    assert scored(score, q, 5) == {0: 1.0, 1: 20.0, 2: 0.0, 3: 5.0, 4: 41.0}
    assert score(np.asarray(q, np.float32), 2)[0].dtype == np.float32  # float64 chunks are scored in float32


@needs_faiss
def test_faiss_scorer_returns_the_m_nearest_as_integer_rows() -> None:
    """The FAISS scorer: the same candidates and distances; its indices are int64 rows of the chunk."""
    chunk = np.array([[0, 0], [3, 4], [1, 0], [0, 2], [5, 5]], np.float32)
    score = _faiss_scorer(chunk)
    assert scored(score, [[1.0, 0.0]], 2) == {2: 0.0, 0: 1.0}
    d, i = score(np.array([[1.0, 0.0]], np.float32), 9)  # more than the chunk holds: all of it, nearest first
    assert i.dtype == np.int64 and i.tolist() == [[2, 0, 3, 1, 4]] and d.tolist() == [[0, 1, 5, 20, 41]]
    np.testing.assert_array_equal(chunk[i[0]][:2], [[1, 0], [0, 0]])


def test_k_limits_and_messages() -> None:
    """k must be a positive integer no larger than the database (less the query with exclude_self);
    k equal to the limit is allowed, and the messages say which limit applies."""
    db = line_points(0, 1, 3)
    q = line_points(0.25)
    got = knn(db, q, 3, engine="numpy")
    assert got.indices.tolist() == [[0, 1, 2]] and got.distances.tolist() == [[0.0625, 0.5625, 7.5625]]
    assert knn(db, q, 1, engine="numpy").indices.tolist() == [[0]]
    raises_exactly("-k must be a positive integer, got 0", None, lambda: knn(db, q, 0))
    raises_exactly("-k must be a positive integer, got 2.5", None, lambda: knn(db, q, 2.5))
    raises_exactly("-k 4 is larger than the database (3 images)", None, lambda: knn(db, q, 4))
    raises_exactly("-k 3 is larger than the database (2 images besides the query)", None,
                   lambda: knn(db, db[[0]], 3, exclude_self=np.array([0])))
    got = knn(db, db[[0]], 2, exclude_self=np.array([0]))
    assert got.indices.tolist() == [[1, 2]] and got.distances.tolist() == [[1.0, 9.0]]


def test_exclude_self_leaves_out_only_the_query_row() -> None:
    """Excluding the query's own row leaves each other row exactly once (no row stands in for it)."""
    db = line_points(0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26)
    got = knn(db, db[[0, 4]], 2, exclude_self=np.array([0, 4]), engine="numpy")
    assert got.indices.tolist() == [[1, 2], [5, 6]]
    assert got.distances.tolist() == [[1.0, 4.0], [1.0, 4.0]]


def test_rerank_sees_k_plus_margin_candidates(monkeypatch) -> None:
    """The float64 re-rank gets k + RERANK_MARGIN float32 candidates per query, one more with exclude_self
    (the query itself, which is then not offered)."""
    seen: list[np.ndarray] = []
    real = nbmod._exact_rerank
    monkeypatch.setattr(nbmod, "_exact_rerank", lambda db, q, cand, k: seen.append(cand.copy()) or real(db, q, cand, k))
    db = line_points(*range(40))
    got = knn(db, line_points(10.25), 3, engine="numpy")
    assert got.indices.tolist() == [[10, 11, 9]]
    assert seen[-1].shape == (1, 3 + RERANK_MARGIN)
    got = knn(db, db[[10]], 3, exclude_self=np.array([10]), engine="numpy")
    assert got.indices.tolist() == [[9, 11, 8]]
    assert seen[-1].shape == (1, 3 + RERANK_MARGIN + 1) and 10 not in seen[-1]


def test_engine_choice_picks_the_scorer(monkeypatch) -> None:
    """engine='numpy' scores with the matrix product, 'faiss' with FAISS; the result names the engine used."""
    used: list[str] = []
    for name in ("_numpy_scorer", "_faiss_scorer"):
        real = getattr(nbmod, name)
        monkeypatch.setattr(nbmod, name, lambda chunk, real=real, name=name: used.append(name) or real(chunk))
    db, q = line_points(0, 1, 3), line_points(2.75)
    got = knn(db, q, 1, engine="numpy")
    assert (used, got.engine, got.indices.tolist(), got.distances.tolist()) == (["_numpy_scorer"], "numpy", [[2]], [[0.0625]])
    if faiss_available():
        used.clear()
        got = knn(db, q, 1, engine="faiss")
        assert (used, got.engine, got.indices.tolist()) == (["_faiss_scorer"], "faiss", [[2]])


def test_large_common_offset_still_ranks_exactly() -> None:
    """Vectors sharing a large common part (like fc7's bias) are ranked exactly across several chunks:
    the centre is the mean over all chunks, so float32 candidate scores do not drown in cancellation."""
    db = (1000 + np.arange(200, dtype=np.float64) / 1024).astype(np.float32)[:, None]  # exact in float32
    q = np.array([[1000 + 150.25 / 1024]], np.float32)
    got = knn(db, q, 5, engine="numpy", chunk_rows=100)
    assert got.indices.tolist() == [[150, 151, 149, 152, 148]]
    np.testing.assert_allclose(got.distances, [[(x / 1024) ** 2 for x in (0.25, 0.75, 1.25, 1.75, 2.25)]], rtol=1e-9)


def test_distance_budget_splits_the_database_into_chunks(monkeypatch) -> None:
    """The distance budget bounds the default chunk ((budget / 4 bytes) / queries rows: 256 of 300 here),
    and the chunked search is still exact."""
    monkeypatch.setattr(nbmod, "DISTANCE_BUDGET", 4096)
    got = knn(line_points(*range(300)), line_points(10.25, 100.25, 260.25, 299.25), 2, engine="numpy")
    assert got.indices.tolist() == [[10, 11], [100, 101], [260, 261], [299, 298]]
    assert got.distances.tolist() == [[0.0625, 0.5625]] * 3 + [[0.0625, 1.5625]]


def test_high_dimensional_rerank_covers_every_query() -> None:
    """With wide features the exact re-rank runs one query at a time; every query still gets its neighbours."""
    db = np.zeros((20, 1 << 17), np.float32)
    db[:, 0] = np.arange(20)
    q = np.zeros((2, 1 << 17), np.float32)
    q[:, 0] = [0.25, 7.75]
    got = knn(db, q, 2, engine="numpy")
    assert got.indices.tolist() == [[0, 1], [8, 7]]
    assert got.distances.tolist() == [[0.0625, 0.5625], [0.0625, 0.5625]]


# --------------------------------------------------------------------------- engine choice


def test_choose_engine_with_faiss_installed() -> None:
    """auto uses FAISS from the threshold on (inclusive); explicit choices are kept; unknown names are errors."""
    if faiss_available():
        assert choose_engine("auto", 1000, 1000) == "faiss"
        assert choose_engine("faiss", 1) == "faiss"
    assert choose_engine("auto", 999, 1000) == "numpy"
    assert choose_engine("numpy", 10**9, 1) == "numpy"
    raises_exactly("engine: unknown value 'fast'; allowed: auto, numpy, faiss", None, lambda: choose_engine("fast", 5))


def test_choose_engine_without_faiss(monkeypatch) -> None:
    """Without faiss-cpu: faiss_available() is False, auto and numpy fall back to numpy, and asking for faiss
    is an error keyed on the engine."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    assert faiss_available() is False
    assert choose_engine("auto", 10**6, 10) == "numpy"
    assert choose_engine("numpy", 10) == "numpy"
    raises_exactly("faiss: faiss-cpu is not installed (pip install faiss-cpu); use numpy", "engine",
                   lambda: choose_engine("faiss", 10))


# --------------------------------------------------------------------------- query indices


def test_parse_query_indices_skips_blanks_comments_and_out_of_range() -> None:
    """Blank tokens and '#' comments are skipped (not the rest), n-n is one index, negative and too-large
    indices are skipped with a sentence naming the database's range."""
    got = parse_query_indices("1,,3-3, ,#note,2", 10)
    assert got.rows.tolist() == [1, 3, 2] and got.skipped == []
    got = parse_query_indices("-3,1,10,9", 10)
    assert got.rows.tolist() == [1, 9]
    assert got.skipped == ["query -3: no such image (the database has images 0..9)",
                           "query 10: no such image (the database has images 0..9)"]


def test_parse_query_indices_errors() -> None:
    """Undecodable tokens, backwards ranges and no usable query are errors keyed on the queries."""
    raises_exactly("cannot decode 'X5' in 'X5': expected a feature folder, image indices like 0,5,10-12, "
                   "or a file of indices", "queries", lambda: parse_query_indices("X5", 10))
    raises_exactly("range '5-3' runs backwards", "queries", lambda: parse_query_indices("5-3", 10))
    raises_exactly("'50': no usable query (query 50: no such image (the database has images 0..9))", "queries",
                   lambda: parse_query_indices("50", 10))
    raises_exactly("',': no usable query", "queries", lambda: parse_query_indices(",", 10))
    for tok in ("--3", "\u00b2", "3-"):  # str.isdigit accepts "²" and "--3".lstrip("-"); int() does not
        raises_exactly(f"cannot decode {tok!r} in {tok!r}: expected a feature folder, image indices like 0,5,10-12, "
                       "or a file of indices", "queries", lambda tok=tok: parse_query_indices(tok, 10))


def test_parse_query_indices_from_a_file(tmp_path: Path) -> None:
    """A file: one index or range a line (commas allowed), comments and blank lines skipped; a bad token
    names the file."""
    f = tmp_path / "queries.txt"
    f.write_text("# favourites\n0, 2\n\n4-5\n7\n", "utf-8")
    assert parse_query_indices(str(f), 10).rows.tolist() == [0, 2, 4, 5, 7]
    f.write_text("1\nzebra\n", "utf-8")
    raises_exactly(f"cannot decode 'zebra' in {str(f)!r}: expected a feature folder, image indices like 0,5,10-12, "
                   "or a file of indices", "queries", lambda: parse_query_indices(str(f), 10))


# --------------------------------------------------------------------------- saved results


def test_to_dict_writes_every_field() -> None:
    """The JSON record: folders, k, engine, fingerprint, skipped, seconds, and per query its row, label, path,
    neighbours with their labels, paths and squared distances."""
    db = FakeSet("/feats/train", [0, 1, 1, 0])
    qs = FakeSet("/feats/val", [1, 0])
    nb = Neighbours(np.array([[3, 0], [1, 2]]), np.array([[0.5, 1.5], [2.0, 4.0]]), "numpy")
    res = SearchResult(db, qs, np.array([1, 0]), nb, ["query 9: no such image"], 0.25)
    assert res.to_dict() == {
        "database": "/feats/train", "queries_from": "/feats/val", "k": 2, "engine": "numpy",
        "checkpoint_sha256": "abc123", "skipped": ["query 9: no such image"], "seconds": 0.25,
        "results": [
            {"query": 1, "query_label": 0, "query_path": "val/1.jpg", "neighbours": [3, 0], "labels": [0, 0],
             "paths": ["train/3.jpg", "train/0.jpg"], "squared_distances": [0.5, 1.5]},
            {"query": 0, "query_label": 1, "query_path": "val/0.jpg", "neighbours": [1, 2], "labels": [1, 1],
             "paths": ["train/1.jpg", "train/2.jpg"], "squared_distances": [2.0, 4.0]},
        ]}


@pytest.fixture
def line_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A database folder of points 0, 1, 3, 6, 10 on a line and a query folder of 0.75, 5, 9.5."""
    db = feature_folder(tmp_path / "db", line_points(0, 1, 3, 6, 10), [0, 1, 0, 1, 0])
    qs = feature_folder(tmp_path / "qs", line_points(0.75, 5, 9.5), [1, 1, 0])
    return db, qs


def test_search_folder_queries_max_queries_and_timing(line_folders) -> None:
    """Queries from another folder: the first max_queries rows; seconds is the search's own duration."""
    db, qs = line_folders
    t0 = time.perf_counter()
    res = search_features(db, qs, 2, engine="numpy", max_queries=2)
    elapsed = time.perf_counter() - t0
    assert res.query_rows.tolist() == [0, 1] and res.skipped == []
    assert res.neighbours.indices.tolist() == [[1, 0], [3, 2]]
    assert res.neighbours.distances.tolist() == [[0.0625, 0.5625], [1.0, 4.0]]
    assert 0 <= res.seconds <= elapsed
    assert search_features(db, qs, 1, max_queries=10).neighbours.indices.tolist() == [[1], [3], [4]]
    raises_exactly("applies to queries given as database indices only", "exclude_self",
                   lambda: search_features(db, qs, 2, exclude_self=True))


def test_search_index_queries_exclude_self_and_max_queries(line_folders) -> None:
    """Queries by database index: the first max_queries parsed rows, each leaving itself out with exclude_self."""
    db, _ = line_folders
    res = search_features(db, "2,0,4", 1, engine="numpy", exclude_self=True, max_queries=2)
    assert res.query_rows.tolist() == [2, 0]
    assert res.neighbours.indices.tolist() == [[1], [1]] and res.neighbours.distances.tolist() == [[4.0], [1.0]]
    res = search_features(db, "2,0,4", 1, engine="numpy")
    assert res.query_rows.tolist() == [2, 0, 4] and res.neighbours.indices.tolist() == [[2], [0], [4]]


@needs_faiss
def test_search_passes_the_engine_choice(line_folders) -> None:
    """search_features hands engine and faiss_threshold to the search."""
    db, qs = line_folders
    assert search_features(db, qs, 1, engine="faiss").neighbours.engine == "faiss"
    assert search_features(db, qs, 1, faiss_threshold=5).neighbours.engine == "faiss"
    assert search_features(db, qs, 1, faiss_threshold=6).neighbours.engine == "numpy"


# --------------------------------------------------------------------------- grid


def grid_result() -> SearchResult:
    """Three queries (val rows 2, 0, 1) with three neighbours each; database labels 0, 1, 2, -1 (2 and -1 unknown)."""
    db = FakeSet("/feats/train", [0, 1, 2, -1])
    qs = FakeSet("/feats/val", [0, 1, 1], base=100)
    nb = Neighbours(np.array([[0, 1, 2], [3, 2, 0], [1, 0, 3]]),
                    np.array([[0.5, 1.25, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]), "numpy")
    return SearchResult(db, qs, np.array([2, 0, 1]), nb, [], 0.0)


@pytest.fixture
def drawn(monkeypatch) -> list[dict]:
    """What render_grid hands to the plotting function (images and titles), instead of drawing them."""
    calls: list[dict] = []

    def fake(queries, neighbours, *, query_titles=(), neighbour_titles=(), to=None):
        calls.append(dict(queries=queries[:, 0, 0, 0].tolist(), neighbours=neighbours[:, :, 0, 0, 0].tolist(),
                          query_titles=list(query_titles), neighbour_titles=[list(t) for t in neighbour_titles],
                          to=to))
        return b"png"

    monkeypatch.setattr(plots, "neighbour_grid", fake)
    return calls


def test_grid_places_queries_and_neighbours_with_titles(drawn) -> None:
    """rows x columns cells: each query's image first, then its nearest images; titles name the class
    ('?' for labels outside the class list) and the squared distance."""
    assert render_grid(grid_result(), "out.png", rows=2, columns=2) == b"png"
    assert drawn == [dict(queries=[102, 100], neighbours=[[0, 1], [3, 2]],
                          query_titles=["query: dog", "query: cat"],
                          neighbour_titles=[["cat (0.5)", "dog (1.25)"], ["? (3)", "? (4)"]], to="out.png")]


def test_grid_defaults_to_every_query_and_neighbour_up_to_figure4(drawn) -> None:
    """Without rows/columns: Figure 4's 5 rows and 6 neighbours, capped by what the result holds (3 x 3)."""
    render_grid(grid_result())
    assert drawn[0]["queries"] == [102, 100, 101]
    assert drawn[0]["neighbours"] == [[0, 1, 2], [3, 2, 0], [1, 0, 3]]
    assert drawn[0]["neighbour_titles"][2] == ["dog (6)", "cat (7)", "? (8)"]


def test_grid_with_unreadable_images_is_a_user_error() -> None:
    """Images that cannot be read give one sentence, not a traceback."""
    res = grid_result()
    res.database = FakeSet("/feats/train", [0, 1, 2, -1], fail=OSError("disk gone"))
    raises_exactly("cannot draw the neighbour grid: the images are not readable (disk gone)", None,
                   lambda: render_grid(res))
