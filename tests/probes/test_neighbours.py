"""Exact nearest neighbours in feature space (§6.1, Figure 4 right)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.probes.features import extract_features
from alexnet.probes.neighbours import brute_force, faiss_available, knn, parse_query_indices, search_features
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
