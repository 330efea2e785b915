"""Writing stores (``alexnet.data.shards``): every shard's and every split's sidecar reaches the store's tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alexnet.data.shards import finalize_store, write_shard
from alexnet.data.store import Store, verify_store

CLASSES = [("n00000001", "one"), ("n00000002", "two")]


def test_rejected_and_notes_of_every_shard_and_split_reach_the_tables(tmp_path: Path) -> None:
    out = tmp_path / "store"
    rng = np.random.default_rng(0)
    sidecars = {}
    for split, shards in (("train", 3), ("val", 2)):
        folder = out / split
        folder.mkdir(parents=True)
        cars = []
        for k in range(shards):
            images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
            cars.append(write_shard(folder, k, images, [0, 1], [f"{split}/{k}/a.JPEG", f"{split}/{k}/b.JPEG"],
                                    key="test", rejected=[(f"{split}/{k}/bad.JPEG", f"broken {split} {k}")],
                                    notes=[(f"{split}/{k}/a.JPEG", f"upscaled {split} {k}"),
                                           (f"{split}/{k}/b.JPEG", "CMYK")]))
        sidecars[split] = cars
    manifest = finalize_store(out, image_size=8, fmt="npy", quality=90, classes=CLASSES, sidecars=sidecars,
                              source="test", options={}, split_half=None)
    rejected = (out / "rejected.tsv").read_text().splitlines()
    notes = (out / "notes.tsv").read_text().splitlines()
    assert rejected[0] == "path\treason" and notes[0] == "path\tnote"
    assert rejected[1:] == [f"{s}/{k}/bad.JPEG\tbroken {s} {k}" for s, n in (("train", 3), ("val", 2))
                            for k in range(n)]
    assert len(notes) == 1 + 2 * 5 and notes[-2:] == ["val/1/a.JPEG\tupscaled val 1", "val/1/b.JPEG\tCMYK"]
    assert manifest["splits"]["train"]["rejected"] == 3 and manifest["splits"]["val"]["rejected"] == 2
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [2, 2, 2]
    store = Store(out)
    assert len(store.split("train")) == 6 and store.split("val").paths()[-1] == "val/1/b.JPEG"
    assert verify_store(out) == []
