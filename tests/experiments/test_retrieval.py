"""``alexnet experiment retrieval``: §6.1's precision@k for fc7 features, binary codes and raw pixels,
recomputed here by brute force from the saved features and the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexnet.errors import UserError
from alexnet.experiments import record, run_experiment
from helpers import make_store


def _precision(db: np.ndarray, db_labels: np.ndarray, q: np.ndarray, q_labels: np.ndarray, k: int) -> float:
    """Share of each query's k nearest (squared Euclidean, ties to the lower index) with the query's label."""
    d = ((q[:, None, :].astype(np.float64) - db[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    return float((db_labels[nearest] == q_labels[:, None]).mean())


def test_retrieval_quick_trains_a_network_and_records_each_method(tmp_path: Path, capsys) -> None:
    from alexnet.data.store import Store
    from alexnet.probes.features import FeatureSet

    store = make_store(tmp_path / "cifar", train=64, val=24, size=32, classes=4).path
    out = tmp_path / "retrieval"
    params = ["train_steps=3", "batch_size=16", "database_images=0", "queries=0", "bits=[8, 16]", "code_epochs=1", "k=4"]
    run_experiment("retrieval", budget="quick", out=out, seeds=2, params=params, stores={"cifar10-32": store},
                   cache=tmp_path / "cache", threads=1)
    rec = record.load(out / "record.json")
    assert set(rec["arms"]) == {"fc7", "pixels", "codes-8", "codes-16"}
    db, q = FeatureSet.open(out / "features-database"), FeatureSet.open(out / "features-queries")
    assert len(db) == 64 and len(q) == 24 and db.meta["split"] == "train" and q.meta["split"] == "val"
    db_labels, q_labels = np.asarray(db.labels), np.asarray(q.labels)
    fc7 = rec["arms"]["fc7"]["per_seed"]["0"]
    assert fc7["precision"] == pytest.approx(_precision(np.asarray(db.features), db_labels, np.asarray(q.features),
                                                        q_labels, 4))
    s = Store(store)
    crop = db.meta["model_spec"]["input_size"]
    o = (32 - crop) // 2
    pix = {n: s.split(n).read(np.arange(len(s.split(n))))[:, o:o + crop, o:o + crop].reshape(-1, crop * crop * 3)
           for n in ("train", "val")}
    assert rec["arms"]["pixels"]["per_seed"]["0"]["precision"] == pytest.approx(
        _precision(pix["train"].astype(np.float32), db_labels, pix["val"].astype(np.float32), q_labels, 4))
    for b in (8, 16):
        seeds = rec["arms"][f"codes-{b}"]["per_seed"]
        assert set(seeds) == {"0", "1"}
        for v in seeds.values():
            assert v["bytes_per_image"] == b // 8 and 0 <= v["precision"] <= 1
            assert v["precision"] * 4 * 24 == pytest.approx(round(v["precision"] * 4 * 24))  # hits out of 96
    assert rec["command"].startswith("alexnet") and "precision@4" in record.render(rec)
    # the same network named with run=PATH gives the same exact-search figures
    again = tmp_path / "again"
    run_experiment("retrieval", budget="quick", out=again, params=[
        f'run="{out / "runs" / "network"}"', f'store="{store}"', "database_images=0", "queries=0", "bits=[8]",
        "code_epochs=1", "k=4"], cache=tmp_path / "cache", threads=1)
    rec2 = record.load(again / "record.json")
    assert rec2["arms"]["fc7"]["per_seed"]["0"]["precision"] == fc7["precision"]
    with pytest.raises(UserError, match="does not exist"):
        run_experiment("retrieval", budget="quick", out=tmp_path / "x", params=['run="/nonexistent/run"'],
                       cache=tmp_path / "cache", threads=1)
    with pytest.raises(UserError, match="multiples of 8"):
        run_experiment("retrieval", budget="quick", out=tmp_path / "y", params=["bits=[12]"],
                       cache=tmp_path / "cache", threads=1)
